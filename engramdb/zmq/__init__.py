"""The ZeroMQ endpoint of the service: JSON frames in, the REST app's answers out.

``serve_zmq(app, url)`` binds a ROUTER socket beside the HTTP listener; each frame
``{"op", "namespace", "api_key", "args"}`` becomes the REST request of that ``Memory``
method and runs through the same app (routes, validation, keys, limits), so the two
transports cannot drift apart. ``engramdb.client.ZmqClient`` is its client.
"""

from engramdb.zmq.auth import authorize
from engramdb.zmq.endpoint import ZmqEndpoint, serve_zmq

__all__ = ["ZmqEndpoint", "authorize", "serve_zmq"]
