"""The web app: dashboard pages, the HTTP API, `/health` and `/metrics`.

`create_app(url=, token=, read_only=)` builds one ASGI app (FastAPI) that `corral
dashboard` serves and that users can mount in their own app, e.g. at `/admin/queues`.
"""

from corral.web.app import create_app
from corral.web.context import WebContext

__all__ = ["WebContext", "create_app"]
