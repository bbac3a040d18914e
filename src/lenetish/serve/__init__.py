"""``lenetish serve``: a prediction service with a drawing page, batched under load.

Needs the ``serve`` extra (``pip install 'lenetish[serve]'``: FastAPI, uvicorn and
python-multipart). :func:`create_app` gives the ASGI application; :func:`run_server` serves
it the way the command does (loopback unless told otherwise, one line saying where).
"""

from __future__ import annotations

from lenetish.errors import MissingDependencyError

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - the test extra installs them
    raise MissingDependencyError(
        f"lenetish serve needs FastAPI, uvicorn and python-multipart ({exc.name} is missing): "
        "pip install 'lenetish[serve]' (in a lenetish checkout: pip install '.[serve]')"
    ) from exc

from lenetish.serve.app import create_app
from lenetish.serve.server import background_server, listen, run_server
from lenetish.serve.settings import ServeSettings

__all__ = ["ServeSettings", "background_server", "create_app", "listen", "run_server"]
