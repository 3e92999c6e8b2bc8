"""Running re-executions, one at a time, in the gallery service.

``Reexecutions.loop`` takes the oldest queued version (``reexec_store``) and:

1. asks the hub for the re-execution server with the version's pinned environment and
   profile (``POST /hub/api/gallery/reexecution-server``, ``reexec_hub_api``) and waits
   until it runs (``START_TIMEOUT_S``);
2. sends that server the version's notebook and files (``POST
   <server>kioskhub/gallery/reexecute``, ``extensions.gallery_reexecute``), which runs the
   notebook from the top as the server's account, within ``TIME_LIMIT_S``;
3. compares the answer with the published notebook (``reexec_compare``), with the
   tolerance of the re-execution request, else of the publish request, else of the
   notebook's metadata ``kioskhub.reproduce.tolerance``;
4. stops the server (the hub empties its home), whatever happened, and stores the report,
   with what pins the environment now where it differs from the version's pinning (the
   server runs the environment as it is now: a rebuilt image shows here).

A run that cannot start (the environment is gone, the hub refuses) is stored as ``failed``
with the hub's reason. The service's own token reaches the hub's endpoint
(``custom:gallery:reexecute``) and that one server (``access:servers!user=gallery-run``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from . import reexec_store, store
from .compare import compare_values
from .pinning import pinning_for
from .reexec_compare import compare_reexecution, tolerance_from
from .version_files import open_file, read_all

log = logging.getLogger("kioskhub.gallery")

TIME_LIMIT_S = 600
START_TIMEOUT_S = 600
POLL_S = 1.0
SERVER_PATH = "gallery/reexecution-server"
EXECUTE_PATH = "kioskhub/gallery/reexecute"
ENVIRONMENT_FIELDS = ("kind", "image", "digest", "content_hash", "commit")


class RunFailed(Exception):
    """The version could not be run; the message says why, for the badge."""


class HubCalls:
    """The REST calls of a run, with the service's token."""

    def __init__(self, api_url: str, token: str, max_body: int):
        self.api_url = api_url.rstrip("/") + "/"
        self.headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
        self.max_body = max_body

    async def call(self, method: str, url: str, body: Any = None, timeout: float = 60):
        client = AsyncHTTPClient(max_body_size=self.max_body)
        request = HTTPRequest(
            url,
            method=method,
            headers=self.headers,
            body=json.dumps(body) if body is not None else None,
            allow_nonstandard_methods=True,
            request_timeout=timeout,
        )
        try:
            reply = await client.fetch(request)
        except HTTPClientError as error:
            if error.response is None:
                raise RunFailed(f"{method} {url.split('?')[0]}: {error}") from None
            reply = error.response
        try:
            data = json.loads(reply.body or b"{}")
        except ValueError:
            data = {"message": reply.body[:300].decode(errors="replace")}
        return reply.code, data

    async def server(self, method: str, body: Any = None):
        return await self.call(method, self.api_url + SERVER_PATH, body)


def hub_calls(max_body: int) -> HubCalls:
    return HubCalls(
        os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
        os.environ.get("JUPYTERHUB_API_TOKEN", ""),
        max_body,
    )


class Reexecutions:
    """The queue's worker: one run at a time; ``wake()`` after queuing one."""

    def __init__(self, state, hub: HubCalls):
        self.state = state
        self.hub = hub
        self.woken = asyncio.Event()

    def wake(self) -> None:
        self.woken.set()

    async def loop(self) -> None:
        while True:
            run = await self.state.call(reexec_store.next_queued)
            if run is None:
                self.woken.clear()
                await self.woken.wait()
                continue
            started = time.monotonic()
            try:
                report = await self.run(run)
            except Exception as error:  # noqa: BLE001 (stored as the run's failure)
                if not isinstance(error, RunFailed):
                    log.exception("Re-executing %s v%s", run["entry_id"], run["number"])
                report = {"badge": f"failed ({error})", "cells": [], "problem": str(error)}
            log.info(
                "Re-executed entry %s v%s in %.0f s: %s",
                run["entry_id"], run["number"], time.monotonic() - started, report["badge"],
            )  # fmt: skip
            await self.state.call(reexec_store.finish, run["entry_id"], run["number"], report)

    async def run(self, run: dict[str, Any]) -> dict[str, Any]:
        entry_id, number = run["entry_id"], run["number"]
        version = await self.state.call(store.get_version, entry_id, number)
        published, files = await asyncio.to_thread(self.read_version, version)
        try:
            requested = run["tolerance"] or (version.get("claims") or {}).get("tolerance")
            tolerance = tolerance_from(published.get("metadata"), requested)
        except ValueError as error:
            raise RunFailed(str(error)) from None
        pinning = version.get("pinning") or {}
        environment = await asyncio.to_thread(self.environment_now, pinning)
        url = await self.start_server(pinning)
        try:
            code, answer = await self.hub.call(
                "POST",
                url.rstrip("/") + "/" + EXECUTE_PATH,
                {"notebook": published, "files": files, "time_limit_s": TIME_LIMIT_S},
                timeout=TIME_LIMIT_S + 300,
            )
        finally:
            await self.stop_server()
        if code != 200 or not isinstance(answer.get("notebook"), dict):
            raise RunFailed(f"the server did not run the notebook: {answer.get('message', code)}")
        report = compare_reexecution(
            published, answer["notebook"], tolerance, answer.get("stopped")
        )
        return report | {"problem": None, "environment": environment}

    def environment_now(self, pinning: dict[str, Any]) -> dict[str, Any]:
        """The pinned environment's name, and what pins it now that differs from the
        version's pinning (a rebuilt image, another commit). Blocking (the catalog)."""
        name = pinning.get("environment")
        now = pinning_for(self.state.site, self.state.catalog, name, pinning.get("profile"))
        return {"name": name, "changed": compare_values(pinning, now, ENVIRONMENT_FIELDS)}

    def read_version(self, version: dict[str, Any]) -> tuple[dict, dict[str, str]]:
        """The published notebook, and the version's files as base64. Blocking."""
        entry_id, number = version["entry_id"], version["number"]
        root = self.state.root
        notebook = json.loads(read_all(open_file(root, entry_id, number, None)))
        files = {
            line["name"]: base64.b64encode(
                read_all(open_file(root, entry_id, number, line["name"]))
            ).decode()
            for line in version["manifest"]["files"]
        }
        return notebook, files

    async def start_server(self, pinning: dict[str, Any]) -> str:
        """Start the re-execution server with the pinned choice; its URL once it runs."""
        choice = {name: pinning[name] for name in ("environment", "profile") if pinning.get(name)}
        code, answer = await self.hub.server("POST", choice)
        if code == 409 and "already running" in str(answer.get("message")):
            await self.stop_server()  # left by a run the service did not finish
            code, answer = await self.hub.server("POST", choice)
        if code != 202:
            raise RunFailed(f"the hub did not start the server: {answer.get('message', code)}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            code, answer = await self.hub.server("GET")
            if answer.get("state") == "running":
                return answer["url"]
            if answer.get("state") in ("failed", "stopped"):
                raise RunFailed(
                    f"the environment {choice.get('environment', '?')!r} did not start: "
                    f"{answer.get('problem') or 'it stopped'}"
                )
        await self.stop_server()
        raise RunFailed(f"the server did not start within {START_TIMEOUT_S} s")

    async def stop_server(self) -> None:
        code, answer = await self.hub.server("DELETE")
        if code != 200:
            log.warning("Stopping the re-execution server: %s", answer.get("message", code))
