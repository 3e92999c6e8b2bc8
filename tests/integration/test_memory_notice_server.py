"""A cell that allocates past the memory limit is killed, and the user sees why.

A real ``jupyter server`` with the memory notice runs in a memory cgroup of its own
(400 MiB, below this process's cgroup); a kernel is driven over its websocket, in the
legacy JSON protocol and in the ``v1.kernel.websocket.jupyter.org`` binary protocol.
Needs root and a writable cgroup memory controller (as on this machine and in CI):
without them these tests fail and say why.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.sync.client import connect

from kioskhub.extensions.memory_notice import MemoryCgroup, locate_memory_cgroup
from tests.support.jupyter_server import JupyterServer, start_jupyter_server, stop_jupyter_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LIMIT = 400 * 2**20
WS_PROTOCOL_V1 = "v1.kernel.websocket.jupyter.org"
CONNECTION_CLASS = "kioskhub.extensions.memory_notice.MemoryNoticeConnection"
ENABLE_BY = {
    "connection-class": f"--ServerApp.kernel_websocket_connection_class={CONNECTION_CLASS}",
    "server-extension": "--ServerApp.jpserver_extensions=kioskhub.extensions.memory_notice=True",
}
ALLOCATE_TOO_MUCH = 'x = b"x" * (2 * 1024**3)'
EXIT_BY_ITSELF = "import os; os._exit(1)"
LOG_WARNING = "was killed at the server's memory limit"


# --- a memory cgroup of its own -------------------------------------------------------------


def make_memory_cgroup(limit: int) -> MemoryCgroup:
    """A new memory cgroup below this process's own; fails the test, naming why, if it cannot."""
    text = Path("/proc/self/cgroup").read_text()
    own = locate_memory_cgroup(text)
    if own is None:
        pytest.fail(f"no memory controller in /proc/self/cgroup:\n{text}")
    group = MemoryCgroup(own.version, own.folder / f"kioskhub-test-{uuid.uuid4().hex[:8]}")
    try:
        if own.version == 2 and "memory" not in (own.folder / "cgroup.subtree_control").read_text():
            (own.folder / "cgroup.subtree_control").write_text("+memory")
        group.folder.mkdir()
        if own.version == 1:
            (group.folder / "memory.limit_in_bytes").write_text(str(limit))
            if (group.folder / "memory.memsw.limit_in_bytes").exists():
                (group.folder / "memory.memsw.limit_in_bytes").write_text(str(limit))
        else:
            (group.folder / "memory.max").write_text(str(limit))
            if (group.folder / "memory.swap.max").exists():
                (group.folder / "memory.swap.max").write_text("0")
    except OSError as error:
        remove_cgroup(group)
        pytest.fail(
            f"cannot make a cgroup v{own.version} memory group with a {limit} byte limit "
            f"at {group.folder}: {error}. These tests need root and a writable memory "
            "controller; the memory notice cannot be tested without one."
        )
    return group


def remove_cgroup(group: MemoryCgroup) -> None:
    """Kill what is left in the group, then remove it."""
    if not group.folder.exists():
        return
    deadline = time.monotonic() + 15
    while True:
        pids = (group.folder / "cgroup.procs").read_text().split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            group.folder.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --- a jupyter server in it -------------------------------------------------------------------


@dataclass
class Server(JupyterServer):
    cgroup: MemoryCgroup | None = None


def start_server(folder: Path, cgroup: MemoryCgroup, enable_argument: str) -> Server:
    """``jupyter server`` with the memory notice enabled, started inside ``cgroup``."""
    root = folder / "root"
    root.mkdir()
    env = {
        **os.environ,
        "MEM_LIMIT": str(LIMIT),
        "KIOSKHUB_PROFILE": "small",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "JUPYTER_CONFIG_DIR": str(folder / "config"),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "IPYTHONDIR": str(folder / "ipython"),
    }
    procs = cgroup.folder / "cgroup.procs"

    def join_cgroup() -> None:
        procs.write_text(str(os.getpid()))

    server = start_jupyter_server(
        root, folder / "server.log", env, [enable_argument], preexec_fn=join_cgroup
    )
    return Server(**vars(server), cgroup=cgroup)


@pytest.fixture(scope="module", params=sorted(ENABLE_BY))
def server(request, tmp_path_factory):
    """A server in a 400 MiB memory cgroup, with the notice enabled one way or the other."""
    cgroup = make_memory_cgroup(LIMIT)
    try:
        running = start_server(
            tmp_path_factory.mktemp("memory-notice"), cgroup, ENABLE_BY[request.param]
        )
        yield running
        stop_jupyter_server(running)
    finally:
        remove_cgroup(cgroup)


# --- a client of a kernel, in either websocket protocol --------------------------------------


def encode_v1(channel: str, msg: dict) -> bytes:
    """One message in the v1 binary protocol: part count, offsets, then the parts."""
    keys = ("header", "parent_header", "metadata", "content")
    parts = [channel.encode(), *(json.dumps(msg[key]).encode() for key in keys)]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def decode_v1(frame: bytes) -> dict:
    count = struct.unpack_from("<Q", frame)[0]
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    parts = [frame[start:end] for start, end in zip(offsets, offsets[1:], strict=False)]
    channel, header, parent_header, metadata, content = parts[:5]
    return {
        "channel": channel.decode(),
        "header": json.loads(header),
        "msg_type": json.loads(header)["msg_type"],
        "parent_header": json.loads(parent_header),
        "metadata": json.loads(metadata),
        "content": json.loads(content),
    }


class KernelClient:
    """A websocket client of one kernel, as JupyterLab is one."""

    def __init__(self, ws, session: str):
        self.ws = ws
        self.session = session
        self.protocol = ws.subprotocol or ""

    def execute(self, code: str) -> str:
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id,
                "username": "tester",
                "session": self.session,
                "msg_type": "execute_request",
                "version": "5.3",
                "date": "2026-01-01T00:00:00.000000Z",
            },
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False, "store_history": True},
        }
        if self.protocol == WS_PROTOCOL_V1:
            self.ws.send(encode_v1("shell", msg))
        else:
            self.ws.send(json.dumps({**msg, "channel": "shell"}))
        return msg_id

    def messages(self, seconds: float):
        """Every message that arrives within ``seconds``, decoded."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = self.ws.recv(timeout=left)
            except TimeoutError:
                return
            yield decode_v1(frame) if isinstance(frame, bytes) else json.loads(frame)


@contextmanager
def kernel_client(server: Server, kernel_id: str, protocol: str):
    """Connect to a kernel's channels, in the legacy protocol ("") or the v1 binary one."""
    session = uuid.uuid4().hex
    base = server.url.replace("http://", "ws://")
    with connect(
        f"{base}/api/kernels/{kernel_id}/channels?session_id={session}",
        additional_headers={"Authorization": f"token {server.token}"},
        subprotocols=[protocol] if protocol else None,
        open_timeout=30,
        max_size=None,
    ) as ws:
        assert (ws.subprotocol or "") == protocol
        yield KernelClient(ws, session)


@pytest.fixture
def kernel(server):
    reply = server.api("/api/kernels", "POST", json={"name": "python3"})
    assert reply.status_code == 201, reply.text
    kernel_id = reply.json()["id"]
    yield kernel_id
    server.api(f"/api/kernels/{kernel_id}", "DELETE")


def is_notice(message: dict) -> bool:
    return message["msg_type"] == "stream" and "memory limit" in message["content"]["text"]


def is_restart(message: dict) -> bool:
    return message["msg_type"] == "status" and message["content"]["execution_state"] in (
        "restarting",
        "dead",
    )


@pytest.mark.parametrize("protocol", ["", WS_PROTOCOL_V1], ids=["json", "v1-binary"])
def test_cell_over_the_memory_limit_is_explained_under_the_cell(server, kernel, protocol):
    kills_before = server.cgroup.events().oom_kills
    with kernel_client(server, kernel, protocol) as client:
        msg_id = client.execute(ALLOCATE_TOO_MUCH)
        seen = []
        for message in client.messages(60):
            seen.append(message)
            if is_notice(message):
                break
    kills_after = server.cgroup.events().oom_kills
    assert None not in (kills_before, kills_after) and kills_after > kills_before, (
        f"the kernel was not OOM-killed (cgroup oom_kill {kills_before} -> {kills_after})"
    )

    notices = [message for message in seen if is_notice(message)]
    assert notices, f"no memory notice within 60 s; got {[m['msg_type'] for m in seen]}"
    notice = notices[0]
    assert notice["channel"] == "iopub"
    assert notice["content"]["name"] == "stderr"
    assert notice["parent_header"]["msg_id"] == msg_id
    assert notice["content"]["text"] == (
        "The kernel was stopped: your server reached its memory limit of 400 MiB "
        "(profile 'small'). The kernel has restarted, so earlier variables are gone. "
        "Use less memory, or start your server with a larger profile.\n"
    )
    # JupyterLab drops a cell's pending output when the kernel reports "restarting"
    assert not any(is_restart(message) for message in seen), "notice came after the restart"
    assert f"Kernel {kernel} {LOG_WARNING}" in server.log_text()
    assert "Could not check whether kernel" not in server.log_text()


def test_kernel_that_exits_by_itself_gets_no_notice(server, kernel):
    with kernel_client(server, kernel, "") as client:
        client.execute(EXIT_BY_ITSELF)
        seen = []
        for message in client.messages(60):
            seen.append(message)
            if is_restart(message):
                break
        else:
            pytest.fail(f"kernel did not restart within 60 s; got {seen}")
        seen.extend(client.messages(5))  # a notice would follow the restart within moments
    assert not [message for message in seen if is_notice(message)]
    assert f"Kernel {kernel} {LOG_WARNING}" not in server.log_text()


@pytest.mark.parametrize("protocol", ["", WS_PROTOCOL_V1], ids=["json", "v1-binary"])
def test_run_all_puts_the_notice_under_the_cell_that_was_running(server, kernel, protocol):
    with kernel_client(server, kernel, protocol) as client:
        # Queued at once, as JupyterLab's "Run All Cells" sends them. The short sleep lets
        # the kernel's threads send "a = 1"'s idle and reply before the allocation holds
        # the GIL until the kill; without any sign that a cell finished, the notice goes
        # under the oldest unfinished one.
        first, killed, _queued = (
            client.execute(code)
            for code in ("a = 1", f"import time; time.sleep(0.5); {ALLOCATE_TOO_MUCH}", "1")
        )
        notice = next((m for m in client.messages(60) if is_notice(m)), None)
    assert notice is not None, "no memory notice within 60 s"
    assert notice["parent_header"]["msg_id"] == killed
    assert first != killed
