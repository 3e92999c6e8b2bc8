"""An asynchronous client of a hub, as a browser and a notebook frontend use it (aiohttp).

One ``HubClient`` per simulated person: its own cookies, its own token. Every call returns
plain data or raises ``HubError`` with what the hub answered, so that a benchmark can count
failures by step. ``SpawnOutcome`` keeps what a spawn benchmark reports (429 answers
included).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)


class HubError(RuntimeError):
    """The hub or a server answered something other than what the step needs."""


@dataclass
class SpawnOutcome:
    """One spawn: seconds from the first request to ready, and what happened on the way."""

    user: str
    seconds: float | None = None
    ok: bool = False
    answers_429: int = 0
    error: str | None = None
    events: list[dict] = field(default_factory=list)
    first_cell: float | None = None
    """Seconds from the first request to a new kernel's first cell result, where measured."""


class HubClient:
    """A person using the hub: sign in on the form, get a token, then the REST API."""

    def __init__(self, url: str, *, connections: int = 100) -> None:
        self.url = url.rstrip("/")
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # the hub is on 127.0.0.1
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=TIMEOUT,
        )
        self.token: str | None = None

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ---- sign-in ------------------------------------------------------------------------

    def _xsrf(self) -> str:
        for cookie in self.session.cookie_jar:
            if cookie.key == "_xsrf":
                return cookie.value
        return ""

    async def login(self, username: str, password: str) -> None:
        """Sign in on the login form. Redirects are never followed: the hub's home page
        would start a server (plain JupyterHub, without a spawn form)."""
        async with self.session.get(f"{self.url}/hub/login", allow_redirects=False) as page:
            await page.read()
            if page.status == 302:
                return  # still signed in
            if page.status != 200:
                raise HubError(f"login page answered {page.status}")
        form = {"username": username, "password": password, "_xsrf": self._xsrf()}
        async with self.session.post(
            f"{self.url}/hub/login", data=form, allow_redirects=False
        ) as reply:
            await reply.read()
            if reply.status != 302:
                raise HubError(f"login as {username} answered {reply.status}")

    async def request_token(self, username: str, note: str = "benchmark") -> str:
        """An API token for the signed-in user (as JupyterHub's token page makes one)."""
        async with self.session.post(
            f"{self.url}/hub/api/users/{username}/tokens",
            json={"note": note, "expires_in": 7200},
            headers={"X-XSRFToken": self._xsrf()},
        ) as reply:
            body = await reply.text()
            if reply.status != 201:
                raise HubError(f"token request answered {reply.status}: {body[:200]}")
            self.token = json.loads(body)["token"]
            return self.token

    # ---- REST API -----------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    async def api(self, method: str, path: str, **kwargs) -> tuple[int, object, dict]:
        """``(status, JSON body or text, headers)`` of a hub API call."""
        headers = {**self._auth(), **kwargs.pop("headers", {})}
        async with self.session.request(
            method, f"{self.url}/hub/api{path}", headers=headers, **kwargs
        ) as reply:
            text = await reply.text()
            try:
                body = json.loads(text) if text else None
            except json.JSONDecodeError:
                body = text
            return reply.status, body, dict(reply.headers)

    async def spawn(
        self, user: str, body: dict | None = None, *, timeout: float = 300
    ) -> SpawnOutcome:
        """Request ``user``'s server and, meanwhile, follow its progress stream (so that
        each step's event is timed as it happens; the hub holds the request itself for up
        to its ``slow_spawn_timeout``); then wait for ``/user/<name>/api/status`` to answer
        200. A 429 answer is counted and retried after the hub's Retry-After."""
        outcome = SpawnOutcome(user)
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        request = asyncio.create_task(self._request_spawn(user, body, outcome, deadline))
        follow = asyncio.create_task(self._follow_progress(user, started, request))
        try:
            async with asyncio.timeout(timeout):
                await request
                outcome.events = await follow
            last = outcome.events[-1] if outcome.events else {}
            if not last.get("ready"):
                raise HubError(f"progress ended without ready: {last.get('message', last)}")
            await self.wait_server_status(user, deadline)
            outcome.seconds = time.perf_counter() - started
            outcome.ok = True
        except (HubError, aiohttp.ClientError, TimeoutError) as error:
            outcome.seconds = time.perf_counter() - started
            outcome.error = f"{type(error).__name__}: {error}"
        finally:
            for task in (request, follow):
                task.cancel()
            await asyncio.gather(request, follow, return_exceptions=True)
        return outcome

    async def _request_spawn(
        self, user: str, body: dict | None, outcome: SpawnOutcome, deadline: float
    ) -> int:
        while True:
            status, reply, headers = await self.api(
                "POST", f"/users/{user}/server", json=body or {}
            )
            if status != 429:
                break
            outcome.answers_429 += 1
            if time.monotonic() > deadline:
                raise HubError("still 429 at the deadline")
            await asyncio.sleep(min(float(headers.get("Retry-After", 1)), 5))
        if status not in (201, 202):
            raise HubError(f"spawn answered {status}: {str(reply)[:200]}")
        return status

    async def _follow_progress(
        self, user: str, started: float, request: asyncio.Task, poll: float = 0.25
    ) -> list[dict]:
        """The progress events, once the hub has the spawn pending (asked every ``poll``
        seconds until then)."""
        while True:
            events = await self.progress(user, started)
            if events is not None:
                return events
            if request.done() and not request.cancelled() and request.exception() is None:
                # accepted, yet neither pending nor ready: ask once more, then give up
                events = await self.progress(user, started)
                if events is None:
                    raise HubError("the spawn was accepted but the server is not starting")
                return events
            await asyncio.sleep(poll)

    async def progress(self, user: str, started: float | None = None) -> list[dict] | None:
        """The events of the progress stream until ready or failed, each with ``at``, its
        arrival in seconds after ``started`` (a ``perf_counter`` value); None while the
        server is neither starting nor running (the hub answers 400, or 404 before the
        request made it)."""
        events: list[dict] = []
        async with self.session.get(
            f"{self.url}/hub/api/users/{user}/server/progress", headers=self._auth()
        ) as stream:
            if stream.status in (400, 404):
                await stream.read()
                return None
            if stream.status != 200:
                raise HubError(f"progress answered {stream.status}")
            async for raw in stream.content:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if started is not None:
                    event["at"] = time.perf_counter() - started
                events.append(event)
                if event.get("ready") or event.get("failed"):
                    break
        return events

    async def wait_server_status(self, user: str, deadline: float) -> None:
        """Until the server's own ``/api/status`` answers 200 through the proxy."""
        last = None
        while time.monotonic() < deadline:
            try:
                async with self.session.get(
                    f"{self.url}/user/{user}/api/status",
                    headers=self._auth(),
                    allow_redirects=False,
                ) as reply:
                    await reply.read()
                    if reply.status == 200:
                        return
                    last = f"{reply.status} {reply.headers.get('Location', '')}".strip()
            except aiohttp.ClientError as error:
                last = str(error)
            await asyncio.sleep(0.1)
        raise HubError(f"/user/{user}/api/status never answered 200 (last: {last})")

    async def stop(self, user: str, *, timeout: float = 120) -> float:
        """Stop ``user``'s server and wait until the hub lists it as gone; return seconds."""
        started = time.perf_counter()
        status, reply, _ = await self.api("DELETE", f"/users/{user}/server")
        if status not in (202, 204):
            raise HubError(f"stop answered {status}: {str(reply)[:200]}")
        deadline = time.monotonic() + timeout
        while True:
            status, model, _ = await self.api("GET", f"/users/{user}")
            if status == 200 and not model.get("servers"):
                return time.perf_counter() - started
            if time.monotonic() > deadline:
                raise HubError(f"{user}'s server did not stop within {timeout}s")
            await asyncio.sleep(0.2)

    # ---- the user's server: kernels -------------------------------------------------------

    async def start_kernel(self, user: str) -> str:
        async with self.session.post(
            f"{self.url}/user/{user}/api/kernels", json={"name": "python3"}, headers=self._auth()
        ) as reply:
            body = await reply.text()
            if reply.status != 201:
                raise HubError(f"kernel start answered {reply.status}: {body[:200]}")
            return json.loads(body)["id"]

    async def stop_kernel(self, user: str, kernel: str) -> None:
        async with self.session.delete(
            f"{self.url}/user/{user}/api/kernels/{kernel}", headers=self._auth()
        ) as reply:
            await reply.read()
            if reply.status != 204:
                raise HubError(f"kernel stop answered {reply.status}")

    async def execute(self, user: str, kernel: str, code: str, timeout: float = 120) -> str:
        """Run ``code`` over the kernel's websocket; return its text output (or raise)."""
        parts = urlsplit(self.url)
        ws_url = f"ws://{parts.netloc}/user/{user}/api/kernels/{kernel}/channels"
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "username": user,
                "session": uuid.uuid4().hex,
                "msg_type": "execute_request",
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False, "store_history": False},
            "channel": "shell",
        }
        output: list[str] = []
        async with asyncio.timeout(timeout):
            async with self.session.ws_connect(ws_url, headers=self._auth()) as ws:
                await ws.send_str(json.dumps(request))
                async for frame in ws:
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        raise HubError(f"kernel websocket closed ({frame.type.name})")
                    message = json.loads(frame.data)
                    if message.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind, content = message["msg_type"], message["content"]
                    if kind == "stream":
                        output.append(content["text"])
                    elif kind == "execute_result":
                        output.append(content["data"].get("text/plain", ""))
                    elif kind == "error":
                        raise HubError(f"{content['ename']}: {content['evalue']}")
                    elif kind == "status" and content["execution_state"] == "idle":
                        return "".join(output)
        raise HubError("kernel websocket closed before the reply")


async def admin_client(url: str, username: str, password: str, connections: int = 100):
    """A HubClient signed in as the hub's admin, with an admin token."""
    client = HubClient(url, connections=connections)
    await client.login(username, password)
    await client.request_token(username)
    return client
