"""Which data a notebook read in its last run: the Jupyter server's side of the recorder.

This server extension

- makes every ipykernel kernel of the server load the ``kioskhub.extensions.data_reads``
  IPython extension (``--IPKernelApp.extra_extensions``, added to the kernel's command by
  ``RecordingKernelManager``), which writes the kernel's record beside its connection
  file; the record goes when the kernel stops or restarts;
- answers ``GET <base_url>kioskhub/data-reads?path=<notebook path>``: finds the running
  kernel of the notebook's session, reads its record, checks and hashes each file in a
  thread (``data_reads_checksums``) and answers::

      {"notebook": "analysis/run.ipynb",
       "kernel": {"id": ..., "name": "python3", "started": <unix time>},
       "files": [{"path", "mount", "size", "mtime", "sha256"[, "checksum_skipped"]}, ...],
       "mounts": [{"name": ..., "paths": [...]}, ...]}

  A notebook without a running kernel gets 404, a kernel that keeps no record 409, each
  with a message saying what to do.

Enable it in a server with::

    --ServerApp.jpserver_extensions=kioskhub.extensions.data_reads_server=True
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.services.kernels.kernelmanager import ServerKernelManager
from jupyter_server.utils import url_path_join
from tornado import web

from kioskhub.extensions.data_reads import MOUNTS_ENV, parse_mounts, record_path
from kioskhub.extensions.data_reads_checksums import checksum_files, recorded_files

ENDPOINT = "kioskhub/data-reads"
IPYTHON_EXTENSION = "kioskhub.extensions.data_reads"
KERNEL_ARGUMENT = f"--IPKernelApp.extra_extensions={IPYTHON_EXTENSION}"
MAX_RECORD_BYTES = 64 * 2**20
SERVER_KERNEL_MANAGER = "jupyter_server.services.kernels.kernelmanager.ServerKernelManager"


def is_ipykernel(argv: list[str]) -> bool:
    """Whether a kernel command starts an IPython kernel (``-m ipykernel_launcher``, ...)."""
    return any(part in ("ipykernel", "ipykernel_launcher") for part in argv)


def with_recorder(argv: list[str]) -> list[str]:
    """The kernel command with the recorder added, for IPython kernels only."""
    if not is_ipykernel(argv) or KERNEL_ARGUMENT in argv:
        return argv
    return [*argv, KERNEL_ARGUMENT]


class RecordingKernelManager(ServerKernelManager):
    """The server's kernel manager, starting IPython kernels with the data-reads recorder."""

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        return with_recorder(super().format_kernel_cmd(extra_arguments))

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        """Remove the record with the kernel: after a restart, only the new run counts."""
        if self.connection_file:
            record_path(self.connection_file).unlink(missing_ok=True)
        await super()._async_cleanup_resources(restart=restart)


def read_record(path: Path) -> dict | None:
    """A kernel's record, or None where there is none (it may be being replaced: retry once)."""
    for _attempt in range(2):
        try:
            with path.open("rb") as record:
                text = record.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return None
        if len(text) > MAX_RECORD_BYTES:
            raise ValueError(f"the record is larger than {MAX_RECORD_BYTES} bytes")
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    raise ValueError("the record is not a JSON object")


def data_reads_answer(notebook: str, kernel: dict, record: dict, mounts) -> dict:
    """The endpoint's answer, from the kernel's model and record (files checked and hashed)."""
    started = record.get("started")
    return {
        "notebook": notebook,
        "kernel": {
            "id": kernel["id"],
            "name": kernel.get("name"),
            "started": started if isinstance(started, (int, float)) else None,
        },
        "files": checksum_files(recorded_files(record), mounts),
        "mounts": [mount.as_json() for mount in mounts],
    }


async def notebook_data_reads(session_manager, kernel_manager, notebook: str) -> dict:
    """What the running kernel of ``notebook`` read (the endpoint's answer), for this
    endpoint and for other extensions of the server; ``web.HTTPError`` (404, 409) with a
    message saying what to do when it cannot be known."""
    sessions = await session_manager.list_sessions()
    kernels = [
        s["kernel"]
        for s in sessions
        if s.get("path") == notebook and s.get("kernel") and s["kernel"]["id"] in kernel_manager
    ]
    if not kernels:
        raise web.HTTPError(
            404,
            f"The notebook {notebook} has no running kernel: run the notebook first, then "
            "publish it while its kernel still runs, so that the data it read is known.",
        )
    kernel = kernels[0]
    manager = kernel_manager.get_kernel(kernel["id"])
    record_file = record_path(manager.connection_file)
    mounts = parse_mounts(os.environ.get(MOUNTS_ENV))
    try:
        record = await asyncio.to_thread(read_record, record_file)
    except ValueError as error:
        raise web.HTTPError(
            409, f"The kernel's record of the data it read is unusable: {error}."
        ) from None
    if record is None:
        if mounts:
            raise web.HTTPError(
                409,
                f"The kernel of {notebook} keeps no record of the data it read: its "
                "environment lacks KioskHub's recorder, or it is not a Python kernel. "
                "Restart the kernel in a KioskHub environment and run the notebook again.",
            )
        record = {"files": []}  # no data mounts: nothing can have been read from them
    return await asyncio.to_thread(data_reads_answer, notebook, kernel, record, mounts)


class DataReadsHandler(APIHandler):
    """``GET kioskhub/data-reads?path=<notebook>``: what the notebook's kernel read."""

    auth_resource = "kernels"

    @web.authenticated
    @authorized
    async def get(self) -> None:
        notebook = self.get_argument("path", "").strip("/")
        if not notebook:
            raise web.HTTPError(400, "Name the notebook: ?path=<notebook path>.")
        answer = await notebook_data_reads(self.session_manager, self.kernel_manager, notebook)
        self.finish(json.dumps(answer))


def _jupyter_server_extension_points():
    return [{"module": "kioskhub.extensions.data_reads_server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Add the endpoint; record in kernels, unless a site chose its own kernel manager."""
    pattern = url_path_join(serverapp.web_app.settings["base_url"], ENDPOINT)
    serverapp.web_app.add_handlers(".*$", [(pattern, DataReadsHandler)])
    kernels = serverapp.kernel_manager
    if kernels.kernel_manager_class == SERVER_KERNEL_MANAGER:
        kernels.kernel_manager_class = f"{__name__}.RecordingKernelManager"
        serverapp.log.info("data_reads: kernels record the data they read under the mounts")
    elif kernels.kernel_manager_class != f"{__name__}.RecordingKernelManager":
        serverapp.log.warning(
            "data_reads: the kernel manager class is %s, not the default; kernels will not "
            "record the data they read",
            kernels.kernel_manager_class,
        )
