"""How a hub-managed KioskHub service starts and stops: the site from ``--config`` or from
``KIOSKHUB_SITE_JSON`` (the hub hands it in), logging, and serving until SIGTERM or SIGINT.
The builder and the gallery both start through ``run_service``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from kioskhub.hub.schema.site import Site

from .hub_service import SITE_VARIABLE, site_from_json


async def until_stopped() -> None:
    """Return once the process is asked to stop (SIGTERM, SIGINT)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def run_service(prog: str, serve: Callable[[Site], Awaitable[None]], argv=None) -> int:
    """Parse ``argv``, load the site, and run ``serve(site)``; the exit status."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", help=f"site config file (default: ${SITE_VARIABLE})")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="[%(levelname).1s %(asctime)s %(name)s] %(message)s"
    )
    if args.config:
        from kioskhub.hub.schema.config_file import load_site

        site = load_site(args.config)
    elif os.environ.get(SITE_VARIABLE):
        site = site_from_json(os.environ[SITE_VARIABLE])
    else:
        print(f"{parser.prog}: give --config or set ${SITE_VARIABLE}", file=sys.stderr)
        return 2
    asyncio.run(serve(site))
    return 0
