"""The gallery as a JupyterHub service: the hub settings that run it, and what it is handed.

Hub-managed: the hub starts ``python -m kioskhub.hub.gallery.service`` with its API token
and OAuth client and proxies ``/services/gallery/``. The service's own token may read user
names, admin flags and groups (``read:users:name``, ``read:users:groups``: who may read what)
and servers (``read:servers``: the ``user_options`` of an author's running server, which pin
a version's environment), and it starts, uses and stops the one server that re-executes
versions (``custom:gallery:reexecute``, ``access:servers!user=gallery-run``:
``reexec_hub_api``), and asks the hub to remove temporary reviewer seats past their end
(``custom:gallery:seats``: ``seats_hub``, which removes only ``rv-`` seats the gallery's
database says ended), and, where the site builds environments, asks the Environments
service for a pinned build of a version's commit on a reader's behalf
(``custom:environments:pinned-builds``, ``access:services!service=environments``:
``reproduce_pinned``); nothing else. The hub serves the seat page ``/hub/gallery-seat/…``.
Every user may access the service
(``access:services!service=gallery``), which decides per handler what each may do
(``access``). Every hub page links it ("Gallery" in the navigation bar).
"""

from __future__ import annotations

from typing import Any

from kioskhub.hub.dask_gateway import SERVER_SCOPES
from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.hub_service import ACCESS_SCOPE as BUILDER_ACCESS_SCOPE
from kioskhub.image_builder.hub_service import PINNED_BUILDS_SCOPE, SITE_VARIABLE, site_json

from .reexec_hub_api import REEXECUTE_SCOPE, REEXECUTION_USER, reexecution_hub_routes
from .seats_hub import SEATS_SCOPE, seat_hub_routes

SERVICE_NAME = "gallery"
SERVICE_PREFIX = f"/services/{SERVICE_NAME}/"
ACCESS_SCOPE = f"access:services!service={SERVICE_NAME}"
SERVICE_SCOPES = [
    "read:users:name",
    "read:users:groups",
    "read:servers",
    REEXECUTE_SCOPE,
    f"access:servers!user={REEXECUTION_USER}",
    SEATS_SCOPE,
]


def gallery_hub_settings(site: Site, *, python: str) -> dict[str, Any]:
    """The JupyterHub settings that run the gallery service, or {} when it is off."""
    if not site.gallery.enabled:
        return {}
    scopes, custom_scopes = (
        list(SERVICE_SCOPES),
        {
            REEXECUTE_SCOPE: {
                "description": "Start and stop the server that re-executes gallery versions"
            },
            SEATS_SCOPE: {
                "description": "Remove the gallery's temporary reviewer seats that ended"
            },
        },
    )
    if site.builder.enabled:
        scopes += [PINNED_BUILDS_SCOPE, BUILDER_ACCESS_SCOPE]
        custom_scopes[PINNED_BUILDS_SCOPE] = {
            "description": "Ask the Environments service to rebuild, beside an environment, a "
            "commit it was built from, for a gallery version pinned to it"
        }
    return {
        "JupyterHub": {
            "services": [
                {
                    "name": SERVICE_NAME,
                    "url": f"http://127.0.0.1:{site.gallery.port}",
                    "command": [python, "-m", "kioskhub.hub.gallery.service"],
                    "environment": {SITE_VARIABLE: site_json(site)},
                    "cwd": str(site.hub.state_dir),
                    "oauth_no_confirm": True,
                    "display": True,
                }
            ],
            "load_roles": [
                {"name": "user", "scopes": ["self", ACCESS_SCOPE]},
                {
                    "name": "kioskhub-gallery",
                    "description": "The review gallery: who a user is, their groups, their "
                    "servers' options; starts, uses and stops the re-execution server; "
                    "removes temporary reviewer seats that ended",
                    "services": [SERVICE_NAME],
                    "scopes": scopes,
                },
            ],
            "custom_scopes": custom_scopes,
            "extra_handlers": reexecution_hub_routes(site) + seat_hub_routes(site),
            "template_vars": {"kh_gallery_url": SERVICE_PREFIX},
        },
        "KioskSpawner": {"server_token_scopes": [*SERVER_SCOPES, ACCESS_SCOPE]},
    }
