"""The REST service: a FastAPI app over the same ``Memory`` the library uses.

``create_app(memory, settings)`` builds the app; ``run(settings, host, port, workers)``
serves it with uvicorn (``engramdb serve``).
"""

from engramdb.server.app import app_from_env, create_app
from engramdb.server.runner import run

__all__ = ["app_from_env", "create_app", "run"]
