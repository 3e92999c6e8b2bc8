"""Copy a gallery version into this server: the other half of "Open in my server".

This server extension runs as the server's user, so the copy is the user's own, written
through the server's contents manager. It answers

- ``POST <base_url>kioskhub/gallery/fetch`` with JSON ``{entry, version}``: answers
  ``{folder, path, reused}`` or ``{message}``;
- ``GET <base_url>kioskhub/gallery/fetch?entry=&version=``: the same, then sends the browser
  to JupyterLab on the copied notebook. It is the ``next`` of the hub's spawn URL that the
  gallery's "Open in my server" button leads to. A navigation that another site started is
  refused (``Sec-Fetch-Site``), so a page elsewhere cannot make the browser copy files.

It asks the gallery (``KIOSKHUB_GALLERY_URL``) with the server's own API token, as the
user: the gallery answers 404 for a version the user may not read. Each name is checked as
a plain relative path, each download against the manifest's sha256, and nothing is written
until all are fetched; a folder holding a different copy is kept (``gallery_fetch_plan``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from kioskhub.extensions.gallery_fetch_plan import (
    VersionFile,
    copy_folders,
    lab_url,
    version_files,
    version_number,
)
from kioskhub.extensions.gallery_publish import write_json_error
from kioskhub.extensions.gallery_publish_body import PublishError

ENDPOINT = "kioskhub/gallery/fetch"
GALLERY_URL_ENV = "KIOSKHUB_GALLERY_URL"
GALLERY_TIMEOUT_S = 300
CROSS_SITE = ("cross-site", "same-site")


async def gallery_get(path: str) -> bytes:
    """``path`` below the gallery's URL, asked with this server's token; PublishError for a
    refusal, saying what the gallery said."""
    gallery_url = os.environ.get(GALLERY_URL_ENV, "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not gallery_url or not token:
        raise PublishError("The review gallery is not turned on at this site.", 404)
    reply = await AsyncHTTPClient().fetch(
        HTTPRequest(
            gallery_url.rstrip("/") + "/" + path,
            headers={"Authorization": f"token {token}"},
            request_timeout=GALLERY_TIMEOUT_S,
        ),
        raise_error=False,
    )
    if reply.code == 200:
        return reply.body
    if reply.code == 404:
        raise PublishError("No such gallery version, or you may not read it.", 404)
    try:
        message = json.loads(reply.body or b"{}").get("message")
    except (ValueError, AttributeError):
        message = None
    raise PublishError(f"The gallery answered {reply.code}: {message or 'no reason given'}", 502)


class FetchVersion(JupyterHandler):
    """Copies version ``version`` of gallery entry ``entry`` into ``gallery/…``."""

    auth_resource = "contents"

    async def copy(self, entry: int, number: int) -> dict[str, Any]:
        record = json.loads(await gallery_get(f"api/entries/{entry}/versions/{number}"))
        files = version_files(record, entry, number)
        for folder in copy_folders(entry, number):
            state = await self.copy_state(folder, files)
            if state == "same":
                return {"folder": folder, "path": f"{folder}/{files[0].name}", "reused": True}
            if state == "absent":
                break
        else:
            raise PublishError(
                f"gallery/{entry} holds {len(copy_folders(entry, number))} different copies "
                f"of version {number}; remove some, then open it again.",
                409,
            )
        contents = {item.name: await self.download(item) for item in files}
        await self.make_folders(folder, files)
        for item in files:
            data = base64.b64encode(contents[item.name]).decode("ascii")
            model = {"type": "file", "format": "base64", "content": data}
            await ensure_async(self.contents_manager.save(model, f"{folder}/{item.name}"))
        return {"folder": folder, "path": f"{folder}/{files[0].name}", "reused": False}

    async def copy_state(self, folder: str, files: list[VersionFile]) -> str:
        """ "absent", "same" (every file there with the manifest's sha256) or "different"."""
        manager = self.contents_manager
        if not await ensure_async(manager.exists(folder)):
            return "absent"
        for item in files:
            path = f"{folder}/{item.name}"
            if not await ensure_async(manager.file_exists(path)):
                return "different"
            model = await ensure_async(
                manager.get(path, content=True, type="file", format="base64")
            )
            data = base64.b64decode(model["content"])
            if hashlib.sha256(data).hexdigest() != item.sha256:
                return "different"
        return "same"

    async def download(self, item: VersionFile) -> bytes:
        data = await gallery_get(item.source)
        if len(data) != item.size or hashlib.sha256(data).hexdigest() != item.sha256:
            raise PublishError(
                f"{item.name!r} as downloaded does not match the gallery's sha256; nothing was "
                "written. Try again, or tell the site's admins.",
                502,
            )
        return data

    async def make_folders(self, folder: str, files: list[VersionFile]) -> None:
        """The copy's folder and every folder its files need, made where missing."""
        paths = [folder] + [f"{folder}/{i.name.rsplit('/', 1)[0]}" for i in files if "/" in i.name]
        parts = {"/".join(p.split("/")[:n]) for p in paths for n in range(1, p.count("/") + 2)}
        for part in sorted(parts, key=lambda p: (p.count("/"), p)):
            if not await ensure_async(self.contents_manager.dir_exists(part)):
                await ensure_async(self.contents_manager.save({"type": "directory"}, part))


class FetchHandler(FetchVersion):
    """POST copies (JSON in and out); GET copies and opens JupyterLab on the copy (a page)."""

    def write_error(self, status_code: int, **kwargs) -> None:
        if self.request.method != "POST":
            super().write_error(status_code, **kwargs)
        else:
            write_json_error(self, status_code, "The copy failed in your server", **kwargs)

    async def checked_copy(self, entry: object, version: object) -> dict[str, Any]:
        try:
            number = version_number(version, "version")
            return await self.copy(version_number(entry, "entry"), number)
        except PublishError as error:
            self.log.warning("gallery_fetch: %s", error)
            raise web.HTTPError(error.status, "%s", str(error)) from None

    @web.authenticated
    @authorized("write")
    async def post(self) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "Send a JSON object {entry, version}.")
        answer = await self.checked_copy(body.get("entry"), body.get("version"))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(answer))

    @web.authenticated
    @authorized("write")
    async def get(self) -> None:
        if self.request.headers.get("Sec-Fetch-Site", "").lower() in CROSS_SITE:
            raise web.HTTPError(403, "Open gallery versions from the gallery's page.")
        answer = await self.checked_copy(
            self.get_argument("entry", ""), self.get_argument("version", "")
        )
        self.redirect(lab_url(self.base_url, answer["folder"]), status=303)


def _jupyter_server_extension_points():
    return [{"module": "kioskhub.extensions.gallery_fetch"}]


def _load_jupyter_server_extension(serverapp) -> None:
    pattern = url_path_join(serverapp.base_url, ENDPOINT)
    serverapp.web_app.add_handlers(".*$", [(pattern, FetchHandler)])
