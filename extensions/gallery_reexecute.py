"""Re-execute a gallery version's notebook in this server, as this server's account.

This server extension answers ``POST <base_url>kioskhub/gallery/reexecute`` with JSON
``{notebook, files, time_limit_s}`` (``files``: relative name → base64 content, as the
gallery stored them). It writes the notebook and files into a fresh folder under the
server's root, clears every output, runs the notebook from the top with nbclient in a kernel
of this server's environment (the notebook's kernel when this server has it, else the
default), stopping at the first error or at the time limit, removes the folder, and answers
``{notebook, stopped}``: the re-executed notebook, and ``{index, why}`` when the time limit
stopped a cell (else null).

The gallery calls it in the server the hub starts for re-execution (``gallery-run``'s, see
``kioskhub.hub.gallery.reexec_hub_api``), with a token that may use that server alone; in
any other server it runs code as that server's own user, nothing more.

Enable it in a server with::

    --ServerApp.jpserver_extensions=kioskhub.extensions.gallery_reexecute=True
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import shutil
import tempfile
import time
from pathlib import Path, PurePosixPath
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbformat import from_dict
from tornado import web

ENDPOINT = "kioskhub/gallery/reexecute"
RUN_FOLDER_PREFIX = ".gallery-reexecution-"
MAX_TIME_LIMIT_S = 3600
STARTUP_TIMEOUT_S = 120


class ReexecuteError(ValueError):
    """A request that cannot be run; the message says why."""


def checked_name(name: Any) -> PurePosixPath:
    """A plain relative file name, else ReexecuteError."""
    path = PurePosixPath(name) if isinstance(name, str) else None
    if (
        path is None
        or not name
        or path.is_absolute()
        or any(part in ("", ".", "..") for part in name.split("/"))
        or any(ord(c) < 32 for c in name)
    ):
        raise ReexecuteError(f"the file name {name!r} is not a plain relative path")
    return path


def cleared(notebook: Any) -> Any:
    """The notebook as an nbformat node with every output and execution count removed."""
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ReexecuteError("'notebook' must be a notebook (nbformat 4 JSON)")
    node = from_dict(notebook)
    for cell in node.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return node


def write_files(folder: Path, notebook: Any, files: Any) -> Path:
    """Write the files and the notebook into ``folder``; the notebook's path."""
    if not isinstance(files, dict):
        raise ReexecuteError("'files' must map names to base64 contents")
    for name, content in files.items():
        target = folder.joinpath(*checked_name(name).parts)
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, TypeError):
            raise ReexecuteError(f"the file {name!r} is not base64") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "xb") as out:
            out.write(data)
    path = folder / "notebook.ipynb"
    path.write_text(json.dumps(notebook))
    return path


class ReexecuteHandler(APIHandler):
    """``POST kioskhub/gallery/reexecute``: run a notebook from the top, answer it run."""

    auth_resource = "kernels"

    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
            if not isinstance(body, dict):
                raise ReexecuteError("send a JSON object {notebook, files, time_limit_s}")
            limit = body.get("time_limit_s", 600)
            if not isinstance(limit, int) or not 1 <= limit <= MAX_TIME_LIMIT_S:
                raise ReexecuteError(f"'time_limit_s' must be 1 to {MAX_TIME_LIMIT_S} seconds")
            notebook = cleared(body.get("notebook"))
        except (ValueError, TypeError) as error:
            raise web.HTTPError(400, str(error)) from None
        root = Path(self.settings["server_root_dir"]).expanduser()
        folder = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix=RUN_FOLDER_PREFIX, dir=root))
        try:
            try:
                await asyncio.to_thread(write_files, folder, notebook, body.get("files") or {})
            except (ValueError, OSError) as error:
                raise web.HTTPError(400, str(error)) from None
            stopped = await self.run(notebook, folder, limit)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
        self.finish(json.dumps({"notebook": notebook, "stopped": stopped}))

    def kernel_name(self, notebook: Any) -> str:
        """The notebook's kernel when this server has it, else the server's default."""
        wanted = (notebook.metadata.get("kernelspec") or {}).get("name")
        known = self.kernel_spec_manager.find_kernel_specs()
        return wanted if wanted in known else self.kernel_manager.default_kernel_name

    async def run(self, notebook: Any, folder: Path, limit: int) -> dict | None:
        """Execute in place; ``{index, why}`` when the time limit stopped a cell."""
        deadline = time.monotonic() + limit
        current = {"index": None}

        def started(cell, cell_index, **_):
            current["index"] = cell_index

        client = NotebookClient(
            notebook,
            kernel_name=self.kernel_name(notebook),
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
            startup_timeout=STARTUP_TIMEOUT_S,
            allow_errors=False,
            resources={"metadata": {"path": str(folder)}},
            on_cell_start=started,
        )
        why = f"the time limit of {limit} s was reached"
        try:
            await asyncio.wait_for(client.async_execute(), limit + STARTUP_TIMEOUT_S)
        except CellExecutionError:
            return None  # the error is in the cell's outputs
        except (CellTimeoutError, TimeoutError):
            return {"index": current["index"], "why": why}
        except DeadKernelError:
            return {"index": current["index"], "why": "the kernel died"}
        return None


def _jupyter_server_extension_points():
    return [{"module": "kioskhub.extensions.gallery_reexecute"}]


def _load_jupyter_server_extension(serverapp) -> None:
    pattern = url_path_join(serverapp.base_url, ENDPOINT)
    serverapp.web_app.add_handlers(".*$", [(pattern, ReexecuteHandler)])
