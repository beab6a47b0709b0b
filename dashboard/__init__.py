"""idemscope dashboard: browse and fix idempotency keys, locks and cached responses (FastAPI + Jinja2 + htmx).

    app.mount("/idempotency", create_dashboard(store=store))

Auth is the host app's job when mounted (`dependencies=[Depends(...)]`), or a token (`token=` or the
IDEMSCOPE_DASHBOARD_TOKEN variable). Mutations are POST only, CSRF-protected, and can be switched off
(`read_only=True`).
"""

from __future__ import annotations

from .app import Dashboard, Limits, create_dashboard
from .views import router

__all__ = ["Dashboard", "Limits", "create_dashboard", "router"]
