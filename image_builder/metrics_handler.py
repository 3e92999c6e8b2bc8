"""``/services/environments/metrics``: the builder's Prometheus metrics, for ``read:metrics``.

The token is checked by the hub (HubOAuth) like every request to the service; a token
without the ``read:metrics`` scope, or none, gets 403. The hub's ``prometheus`` service
token has that scope, so one Prometheus job per URL scrapes the hub and the builder.
"""

from __future__ import annotations

from jupyterhub.services.auth import HubOAuthenticated
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from tornado import web

METRICS_SCOPES = {"read:metrics"}


class MetricsHandler(HubOAuthenticated, web.RequestHandler):
    hub_scopes = METRICS_SCOPES

    def get_login_url(self):
        raise web.HTTPError(403, "send a token with the read:metrics scope")

    @web.authenticated
    def get(self):
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(REGISTRY))


def metrics_routes(prefix: str) -> list[tuple]:
    """The routing table: the metrics below the service's URL prefix."""
    return [(rf"{prefix}metrics", MetricsHandler)]
