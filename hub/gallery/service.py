"""The gallery service: ``python -m kioskhub.hub.gallery.service`` (run by the hub).

On start it creates its database (``<state_dir>/gallery.sqlite``, 0600) and version folder
(``<state_dir>/gallery/``, 0700), opens the build catalog read-only when builds are on, and
serves the REST API, the pages and reviewer links below its prefix
(``/services/gallery/``), re-executes queued versions one at a time (``reexec_run``) and
ends temporary reviewer seats past their end (``seats_expiry``).
It keeps no state in the process beyond a lock that numbers versions one at a time; the
re-execution queue is in the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import sys
from urllib.parse import urlsplit

from tornado import web

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.service_main import run_service, until_stopped
from kioskhub.image_builder.spawn_catalog import open_reader

from . import reexec_store, seats_store, store, threads_store
from .api import api_routes
from .api_base import GalleryState, body_limit, without_secrets
from .export_api import export_routes
from .hub_service import SERVICE_PREFIX
from .pages import page_routes
from .reexec_api import reexecution_routes
from .reexec_run import Reexecutions, hub_calls
from .render_pages import render_routes
from .reproduce_pages import reproduce_routes
from .review import review_routes
from .seats_expiry import seat_expiry_loop
from .seats_pages import seat_routes
from .threads_api import thread_routes
from .version_files import make_root

log = logging.getLogger("kioskhub.gallery")


def open_state(site: Site) -> GalleryState:
    """The database, the version folders and the catalog reader, created where missing."""
    state_dir = site.hub.state_dir
    database = store.database(state_dir)
    store.open_database(database)
    threads_store.create_tables(database)
    seats_store.create_tables(database)
    reexec_store.create_table(database)
    return GalleryState(site, database, make_root(state_dir), open_reader(site))


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access log line, with reviewer links' secrets left out."""
    status = handler.get_status()
    log_method = log.info if status < 400 else log.warning if status < 500 else log.error
    uri = without_secrets(handler.request.uri or "")
    took = 1000.0 * handler.request.request_time()
    log_method("%d %s %s (%s) %.2fms", status, handler.request.method, uri,
               handler.request.remote_ip, took)  # fmt: skip


def make_app(state: GalleryState, prefix: str, runs: Reexecutions) -> web.Application:
    return web.Application(
        api_routes(prefix, {"state": state})
        + reexecution_routes(prefix, state, runs)
        + review_routes(prefix, state)
        + seat_routes(prefix, state)
        + export_routes(prefix, state)
        + thread_routes(prefix, state)
        + render_routes(prefix, state)
        + reproduce_routes(prefix, state)
        + page_routes(prefix, state),
        cookie_secret=secrets.token_bytes(32),
        xsrf_cookies=True,
        log_function=log_request,
    )


async def serve(site: Site) -> None:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", SERVICE_PREFIX)
    url = urlsplit(
        os.environ.get("JUPYTERHUB_SERVICE_URL", f"http://127.0.0.1:{site.gallery.port}")
    )
    state = await asyncio.to_thread(open_state, site)
    runs = Reexecutions(state, hub_calls(max_body=2 * body_limit(site)))
    running = asyncio.ensure_future(runs.loop())
    seats = asyncio.ensure_future(seat_expiry_loop(state, hub_calls(max_body=2**20)))
    server = make_app(state, prefix, runs).listen(
        url.port or site.gallery.port, url.hostname or "127.0.0.1", max_body_size=body_limit(site)
    )
    log.info("Gallery service at %s (prefix %s)", url.geturl(), prefix)
    await until_stopped()
    server.stop()
    running.cancel()
    seats.cancel()
    if state.catalog is not None:
        state.catalog.close()


def main(argv: list[str] | None = None) -> int:
    return run_service("python -m kioskhub.hub.gallery.service", serve, argv)


if __name__ == "__main__":
    sys.exit(main())
