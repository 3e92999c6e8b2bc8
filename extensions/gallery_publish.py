"""Publish the open notebook to the review gallery from JupyterLab.

This server extension (it runs as the server's user, so it reads only what the user may)

- answers ``POST <base_url>kioskhub/gallery/publish`` with JSON ``{path, files, title,
  abstract, tags, visibility, entry}``: ``path`` is the notebook (from the server's root),
  ``files`` the names beside it the author chose, ``entry`` (optional) an entry of theirs to
  publish a new version of. It reads the notebook and the files through the server's
  contents manager, after refusing paths with ``..``, hidden parts, or links leading out of
  the server's folder (``gallery_publish_body``); it records, without the author typing
  them, the notebook's git commit (``git rev-parse HEAD``, and whether the notebook differs
  from it), the kernel's name and Python version (asked of the notebook's running kernel)
  and the data that kernel read (``data_reads_server``, in-process). It sends all that to
  the gallery (``KIOSKHUB_GALLERY_URL``, given by the spawner when the gallery is on) with
  the server's own API token, and answers ``{entry, version, url, notes}`` or
  ``{message}`` with the gallery's refusal;
- hands JupyterLab the "Publish to the gallery…" command (``gallery_publish_lab``).

Enable it in a server with::

    --ServerApp.jpserver_extensions=kioskhub.extensions.gallery_publish=True
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
from pathlib import Path
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient

from kioskhub.extensions.cull_notice import add_lab_extension
from kioskhub.extensions.data_reads_server import notebook_data_reads
from kioskhub.extensions.gallery_publish_body import (
    PublishError,
    PublishRequest,
    data_read_claims,
    entry_page,
    gallery_body,
    gallery_error,
    gallery_post_url,
    git_commit_claim,
    publish_request,
    python_version,
    resolved_inside,
)
from kioskhub.extensions.gallery_publish_lab import PACKAGE_JSON, REMOTE_ENTRY

ENDPOINT = "kioskhub/gallery/publish"
GALLERY_URL_ENV = "KIOSKHUB_GALLERY_URL"
GALLERY_MAX_BYTES_ENV = "KIOSKHUB_GALLERY_MAX_BYTES"
GIT_TIMEOUT_S = 10
KERNEL_TIMEOUT_S = 10
GALLERY_TIMEOUT_S = 600
GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}


async def git_output(folder: Path, *args: str) -> str | None:
    """``git -C folder args`` as an argument list with a timeout; its output, or None
    where git is missing, fails or takes too long."""
    try:
        process = await asyncio.create_subprocess_exec(
            "git", "-c", "core.fsmonitor=false", "-C", str(folder), *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, **GIT_ENV},
        )  # fmt: skip
    except OSError:
        return None
    try:
        output, _ = await asyncio.wait_for(process.communicate(), GIT_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    return output.decode(errors="replace") if process.returncode == 0 else None


async def git_claim(notebook: Path) -> tuple[str | None, list[str]]:
    """The commit of the repository holding ``notebook`` (a real path), and notes."""
    head = await git_output(notebook.parent, "rev-parse", "HEAD")
    if head is None:
        return None, []
    status = await git_output(notebook.parent, "status", "--porcelain", "--", notebook.name)
    return git_commit_claim(head, bool(status and status.strip()))


async def kernel_info(kernel_manager, kernel_id: str) -> dict[str, Any] | None:
    """The ``kernel_info_reply`` content of a running kernel; None if it does not answer
    in time (busy with a long cell)."""
    client = kernel_manager.get_kernel(kernel_id).client()
    client.start_channels()
    try:
        reply = await client.kernel_info(reply=True, timeout=KERNEL_TIMEOUT_S)
    except (TimeoutError, RuntimeError):
        return None
    finally:
        client.stop_channels()
    return reply.get("content")


def write_json_error(handler: web.RequestHandler, status_code: int, failed: str, **kwargs) -> None:
    """An error as ``{"status", "message"}``: the HTTPError's message, else ``failed``."""
    error = kwargs.get("exc_info", (None, None, None))[1]
    if isinstance(error, web.HTTPError) and error.log_message:
        message = error.log_message % error.args if error.args else error.log_message
    else:
        message = f"{failed}; its log says why."
    handler.set_header("Content-Type", "application/json")
    handler.finish(json.dumps({"status": status_code, "message": message}))


class GalleryPublishHandler(APIHandler):
    """``POST kioskhub/gallery/publish``: publish a notebook of this server to the gallery."""

    auth_resource = "contents"

    def write_error(self, status_code: int, **kwargs) -> None:
        """Errors as ``{"message"}`` that JupyterLab shows as they are."""
        write_json_error(self, status_code, "Publishing failed in your server", **kwargs)

    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            request = publish_request(self.get_json_body())
            answer = await self.publish(request)
        except PublishError as error:
            raise web.HTTPError(error.status, "%s", str(error)) from None
        self.finish(json.dumps(answer))

    async def publish(self, request: PublishRequest) -> dict[str, Any]:
        gallery_url = os.environ.get(GALLERY_URL_ENV, "")
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not gallery_url or not token:
            raise PublishError("The review gallery is not turned on at this site.", 404)
        root = Path(self.contents_manager.root_dir)
        notebook_file = await asyncio.to_thread(
            resolved_inside, root, request.notebook, "notebook"
        )
        real_files = {
            name: await asyncio.to_thread(
                resolved_inside, root, request.file_path(name), "file"
            )
            for name in request.files
        }
        self.check_size([notebook_file, *real_files.values()])
        claims, notes = await self.claims(request, notebook_file)
        notebook = await self.read(request.notebook, "notebook")
        files = {name: await self.read(request.file_path(name), "file") for name in request.files}
        body = gallery_body(
            request, notebook, files, claims, os.environ.get("JUPYTERHUB_SERVER_NAME", "")
        )
        reply = await AsyncHTTPClient().fetch(
            gallery_post_url(gallery_url, request.entry),
            method="POST",
            body=await asyncio.to_thread(json.dumps, body),  # up to the gallery's limit
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
            request_timeout=GALLERY_TIMEOUT_S,
            raise_error=False,
        )
        try:
            published = json.loads(reply.body or b"null")
        except ValueError:
            published = None
        if reply.code != 201 or not isinstance(published, dict):
            self.log.warning("gallery_publish: the gallery answered %s", reply.code)
            raise gallery_error(reply.code, published)
        entry = request.entry if request.entry is not None else int(published["id"])
        version = int(published.get("number", 1)) if request.entry is not None else 1
        base_url = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        return {
            "entry": entry,
            "version": version,
            "url": entry_page(base_url, entry, version),
            "notes": notes,
        }

    def check_size(self, paths: list[Path]) -> None:
        limit = os.environ.get(GALLERY_MAX_BYTES_ENV, "")
        total = sum(path.stat().st_size for path in paths)
        if limit.isdigit() and total > int(limit):
            raise PublishError(
                f"The notebook and files come to {total} bytes; the gallery takes at most "
                f"{limit} (gallery.max_version_bytes). Select fewer or smaller files.",
                413,
            )

    async def claims(
        self, request: PublishRequest, notebook_file: Path
    ) -> tuple[dict[str, Any], list[str]]:
        """The claims the author does not type: git commit, kernel, Python, data read."""
        try:
            reads = await notebook_data_reads(
                self.session_manager, self.kernel_manager, request.notebook
            )
        except web.HTTPError as error:
            raise PublishError(error.log_message or "", error.status_code) from None
        commit, notes = await git_claim(notebook_file)
        info = await kernel_info(self.kernel_manager, reads["kernel"]["id"])
        if info is None:
            notes.append("The kernel was busy: its Python version is not recorded.")
        skipped = [r["path"] for r in reads["files"] if r.get("checksum_skipped")]
        if skipped:
            notes.append(f"Recorded without a checksum: {', '.join(skipped[:5])}.")
        claims = {
            "git_commit": commit,
            "kernel": reads["kernel"].get("name"),
            "python": python_version(info),
            "data_reads": data_read_claims(reads),
        }
        return claims, notes

    async def read(self, path: str, kind: str) -> Any:
        """A notebook's JSON, or a file's base64 content, through the contents manager."""
        try:
            if kind == "notebook":
                model = await ensure_async(
                    self.contents_manager.get(path, content=True, type="notebook")
                )
                return model["content"]
            model = await ensure_async(
                self.contents_manager.get(path, content=True, type="file", format="base64")
            )
        except web.HTTPError as error:
            raise PublishError(
                f"{posixpath.basename(path)!r} cannot be read: {error.log_message}",
                error.status_code,
            ) from None
        return "".join(model["content"].split())  # base64 without the contents' line breaks


def _jupyter_server_extension_points():
    return [{"module": "kioskhub.extensions.gallery_publish"}]


def _link_jupyter_server_extension(serverapp) -> None:
    add_lab_extension(serverapp, PACKAGE_JSON, REMOTE_ENTRY)


def _load_jupyter_server_extension(serverapp) -> None:
    pattern = url_path_join(serverapp.base_url, ENDPOINT)
    serverapp.web_app.add_handlers(".*$", [(pattern, GalleryPublishHandler)])
