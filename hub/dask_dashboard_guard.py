"""A scheduler preload: the dashboard answers only requests that carry the cluster's key.

A scheduler's dashboard listens on a loopback port with no authentication of its own,
and every local account can connect to loopback. KioskHub's gateway reaches the
dashboard for the cluster's owner (``kioskhub.hub.dask_dashboard_proxy``) and adds the
header ``DASHBOARD_KEY_HEADER`` with ``dashboard_key(cluster token)``; the scheduler knows
the same token (``DASK_GATEWAY_API_TOKEN``, readable only by the owner's account), so
this preload refuses every request without that key, the websockets included.

Runs inside the scheduler (``dask scheduler --preload kioskhub.hub.dask_dashboard_guard``):
standard library and tornado only.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from tornado import web

DASHBOARD_KEY_HEADER = "X-KioskHub-Dashboard-Key"
REFUSAL = (
    "This Dask dashboard is reached only through Dask Gateway, as the cluster's owner: "
    "open the cluster's dashboard_link."
)


def dashboard_key(cluster_token: str) -> str:
    """The key of a cluster's dashboard, derived from the cluster's gateway token."""
    return hmac.new(cluster_token.encode(), b"kioskhub dashboard", hashlib.sha256).hexdigest()


class DashboardRefused(web.RequestHandler):
    """403 with the reason, for any method."""

    def prepare(self):
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(REFUSAL + "\n")


def guard(application: web.Application, key: str) -> None:
    """Make ``application`` route every request without ``key`` to ``DashboardRefused``.

    distributed's dashboard application looks up every handler (bokeh's too) through
    ``find_handler``, so the check there covers each route.
    """
    find_handler = application.find_handler
    expected = key.encode()

    def find_keyed_handler(request, **kwargs):
        given = request.headers.get(DASHBOARD_KEY_HEADER, "").encode()
        if hmac.compare_digest(given, expected):
            return find_handler(request, **kwargs)
        return application.get_handler_delegate(request, DashboardRefused)

    application.find_handler = find_keyed_handler


def cluster_token() -> str:
    """The scheduler's gateway token: the variable holds it, or a path to a file with it."""
    token = os.environ.get("DASK_GATEWAY_API_TOKEN", "")
    if "/" in token:
        with open(token) as handle:
            token = handle.read()
    if not token:
        raise RuntimeError("DASK_GATEWAY_API_TOKEN is not set: the dashboard cannot be guarded")
    return token


def dask_setup(scheduler) -> None:
    """Guard the scheduler's dashboard (distributed calls this at the scheduler's start)."""
    application = getattr(scheduler, "http_application", None)
    if application is None:
        raise RuntimeError("the scheduler has no HTTP application to guard")
    guard(application, dashboard_key(cluster_token()))
