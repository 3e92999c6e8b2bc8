"""A user of the hub over HTTP: sign in, spawn, and run code in a kernel."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import urlsplit

import requests
from websockets.sync.client import connect


class UserSession:
    """Signs in on the login form with a password, as a browser would, then uses the API."""

    def __init__(self, hub_url: str, username: str):
        self.hub_url = hub_url
        self.username = username
        self.http = requests.Session()
        self.token: str | None = None

    def login(self, password: str) -> requests.Response:
        page = self.http.get(f"{self.hub_url}/hub/login", timeout=30)
        page.raise_for_status()
        return self.http.post(
            f"{self.hub_url}/hub/login",
            data={
                "username": self.username,
                "password": password,
                "_xsrf": self.http.cookies.get("_xsrf"),
            },
            timeout=30,
        )

    def request_token(self, scopes: list[str] | None = None) -> str:
        """Create an API token for this user with the signed-in browser session."""
        body = {"note": "tests", "expires_in": 3600}
        if scopes:
            body["scopes"] = scopes
        reply = self.http.post(
            f"{self.hub_url}/hub/api/users/{self.username}/tokens",
            json=body,
            headers={"X-XSRFToken": self.http.cookies.get("_xsrf")},
            timeout=30,
        )
        reply.raise_for_status()
        self.token = reply.json()["token"]
        return self.token

    def api(self, path: str, method: str = "GET", **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.hub_url}/hub/api{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
            **kwargs,
        )

    def spawn(self, options: dict | None = None, timeout: float = 120) -> list[dict]:
        """Start the default server and follow its progress; return the progress events."""
        reply = self.api(f"/users/{self.username}/server", "POST", json=options or {})
        if reply.status_code not in (201, 202):
            raise RuntimeError(f"spawn refused: {reply.status_code} {reply.text}")
        return self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120) -> list[dict]:
        events = []
        with requests.get(
            f"{self.hub_url}/hub/api/users/{self.username}/server/progress",
            headers={"Authorization": f"token {self.token}"},
            stream=True,
            timeout=timeout,
        ) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("ready") or event.get("failed"):
                        break
        return events

    def stop_server(self, timeout: float = 60) -> None:
        reply = self.api(f"/users/{self.username}/server", "DELETE")
        if reply.status_code not in (202, 204):
            raise RuntimeError(f"stop refused: {reply.status_code} {reply.text}")
        deadline = time.monotonic() + timeout
        while self.api(f"/users/{self.username}").json()["servers"]:
            if time.monotonic() > deadline:
                raise TimeoutError("server did not stop")
            time.sleep(0.5)

    def server(self, path: str, method: str = "GET", **kwargs) -> requests.Response:
        return requests.request(
            method,
            f"{self.hub_url}/user/{self.username}{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=60,
            **kwargs,
        )

    def execute(self, code: str, timeout: float = 60) -> dict:
        """Run ``code`` in a new kernel over its websocket; return text output and errors."""
        kernel = self.server("/api/kernels", "POST", json={"name": "python3"})
        kernel.raise_for_status()
        kernel_id = kernel.json()["id"]
        try:
            return self._execute_in(kernel_id, code, timeout)
        finally:
            self.server(f"/api/kernels/{kernel_id}", "DELETE")

    def _execute_in(self, kernel_id: str, code: str, timeout: float) -> dict:
        parts = urlsplit(self.hub_url)
        ws_url = f"ws://{parts.netloc}/user/{self.username}/api/kernels/{kernel_id}/channels"
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "username": self.username,
                "session": uuid.uuid4().hex,
                "msg_type": "execute_request",
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False, "store_history": False},
            "channel": "shell",
        }
        result = {"stdout": "", "stderr": "", "result": None, "error": None, "died": False}
        headers = {"Authorization": f"token {self.token}"}
        deadline = time.monotonic() + timeout
        with connect(ws_url, additional_headers=headers, open_timeout=30) as ws:
            ws.send(json.dumps(request))
            while time.monotonic() < deadline:
                wait = deadline - time.monotonic()
                try:
                    raw = ws.recv(timeout=min(wait, 5) if result["died"] else wait)
                except TimeoutError:
                    if result["died"]:
                        return result
                    raise
                message = json.loads(raw)
                kind, content = message["msg_type"], message["content"]
                if kind == "status" and content["execution_state"] in ("restarting", "dead"):
                    result["died"] = True
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if kind == "stream":
                    result[content["name"]] += content["text"]
                elif kind == "execute_result":
                    result["result"] = content["data"].get("text/plain")
                elif kind == "error":
                    result["error"] = f"{content['ename']}: {content['evalue']}"
                elif kind == "status" and content["execution_state"] == "idle":
                    return result
        raise TimeoutError(f"no reply to {code!r} within {timeout}s")


def signed_in(hub_url: str, name: str, password: str) -> UserSession:
    """A user who signed in on the login form and holds an API token."""
    user = UserSession(hub_url, name)
    user.login(password)
    user.request_token()
    return user


def servers_once_checked(user: UserSession, name: str, timeout: float = 30) -> dict:
    """The user's servers once the restarted hub has checked them (``pending: check`` over).

    The hub polls each server it kept in the background after it starts, so right after a
    restart a dead server may still be listed while its check runs.
    """
    deadline = time.monotonic() + timeout
    while True:
        servers = user.api(f"/users/{name}").json()["servers"]
        checking = any(server.get("pending") == "check" for server in servers.values())
        if not checking or time.monotonic() > deadline:
            return servers
        time.sleep(0.5)
