"""Remote faces of engramdb: ``Memory``'s methods over the service.

``Client``/``AsyncClient`` speak REST (httpx: pooled keep-alive connections, timeouts,
retries with backoff and jitter, an Idempotency-Key on every write); ``ZmqClient`` speaks
the ZeroMQ endpoint's JSON frames. Each returns what ``Memory`` returns and raises what it
raises (``engramdb.errors``, by the error code of the answer), so moving agent code from
embedded to remote is a one-line change. This package imports no engine and no store.
"""

from engramdb.client.http import AsyncClient, Client
from engramdb.client.zmq_client import ZmqClient

__all__ = ["AsyncClient", "Client", "ZmqClient"]
