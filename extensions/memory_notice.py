"""Tell the user why a kernel died when the server reached its memory limit.

KioskHub runs each user's server, and so its kernels, in a memory cgroup with a hard
limit. When a cell allocates past it, the kernel is OOM-killed and JupyterLab only says
"the kernel appears to have died". This module swaps in a kernel websocket connection
that, when the kernel restarter reports a dead kernel, reads the OOM-kill count of the
server's memory cgroup. If the count rose, it writes an explanation on stderr under the
cell that was running, and a warning in the server log.

Enable it in a server with either argument; ``extensions`` must be importable there::

    --ServerApp.kernel_websocket_connection_class=kioskhub.extensions.memory_notice.MemoryNoticeConnection
    --ServerApp.jpserver_extensions=kioskhub.extensions.memory_notice=True

The first stops the server at start-up where the module cannot be imported; the second
then only logs a warning, and leaves a site's own connection class in place.
The text names the limit from ``MEM_LIMIT`` (bytes) and the profile from
``KIOSKHUB_PROFILE``, both set by the spawner in the server's environment.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.jsonutil import json_default
from jupyter_server.services.kernels.connection.base import (
    deserialize_binary_message,
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado.websocket import WebSocketClosedError

CGROUP_ROOT = Path("/sys/fs/cgroup")
WS_PROTOCOL_V1 = "v1.kernel.websocket.jupyter.org"
# A kernel started directly dies with -SIGKILL; one started through a shell wrapper, 128 + 9.
SIGKILL_EXIT_STATUSES = frozenset({-signal.SIGKILL, 128 + signal.SIGKILL})

# --- cgroup files -------------------------------------------------------------------------


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse a cgroup "flat keyed" file (``key value`` per line), as memory.events is."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value.strip().isdigit():
            values[key] = int(value)
    return values


def parse_v1_oom_control(text: str) -> int | None:
    """The OOM-kill count in a v1 ``memory.oom_control``; None on kernels before 4.13."""
    return parse_flat_keyed(text).get("oom_kill")


@dataclass(frozen=True)
class MemoryEvents:
    """Counters of one memory cgroup at one moment; None where the kernel does not say."""

    oom_kills: int | None = None
    limit_hits: int | None = None


@dataclass(frozen=True)
class MemoryCgroup:
    """The memory cgroup (v1 hierarchy or v2 group) whose folder holds its counters."""

    version: int
    folder: Path

    @classmethod
    def of_this_process(cls, root: Path = CGROUP_ROOT) -> MemoryCgroup | None:
        """The memory cgroup of the running server, or None where none can be found."""
        try:
            text = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
        return locate_memory_cgroup(text, root)

    def events(self) -> MemoryEvents:
        """Read the counters now; a file that cannot be read gives None."""
        if self.version == 1:
            oom_control = _read_text(self.folder / "memory.oom_control")
            failcnt = _read_text(self.folder / "memory.failcnt")
            return MemoryEvents(
                oom_kills=None if oom_control is None else parse_v1_oom_control(oom_control),
                limit_hits=int(failcnt) if failcnt and failcnt.strip().isdigit() else None,
            )
        events = _read_text(self.folder / "memory.events")
        if events is None:
            return MemoryEvents()
        counters = parse_flat_keyed(events)
        return MemoryEvents(oom_kills=counters.get("oom_kill"), limit_hits=counters.get("max"))


def locate_memory_cgroup(proc_cgroup: str, root: Path = CGROUP_ROOT) -> MemoryCgroup | None:
    """Find the memory cgroup in the text of ``/proc/<pid>/cgroup``.

    A v1 hierarchy with the memory controller wins (hybrid machines list both); otherwise
    the v2 group from the ``0::`` line.
    """
    v1_path = v2_path = None
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if "memory" in controllers.split(","):
            v1_path = path
        elif hierarchy == "0" and controllers == "":
            v2_path = path
    if v1_path is not None:
        return MemoryCgroup(1, root / "memory" / v1_path.lstrip("/"))
    if v2_path is not None:
        return MemoryCgroup(2, root / v2_path.lstrip("/"))
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def killed_for_memory(before: MemoryEvents, after: MemoryEvents, exit_status: int | None) -> bool:
    """Whether a kernel that died between ``before`` and ``after`` was OOM-killed.

    The cgroup counts kills of every process in it, so a known exit status other than
    SIGKILL rules the kernel out. Kernels before 4.13 have no OOM-kill count in cgroup
    v1; there a SIGKILL together with a rise in limit hits is taken as the sign.
    """
    if exit_status is not None and exit_status not in SIGKILL_EXIT_STATUSES:
        return False
    if before.oom_kills is not None and after.oom_kills is not None:
        return after.oom_kills > before.oom_kills
    if exit_status is None or before.limit_hits is None or after.limit_hits is None:
        return False
    return after.limit_hits > before.limit_hits


# --- what the user reads ------------------------------------------------------------------

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(size: int) -> str:
    """A size in binary units with at most one decimal: 536870912 -> "512 MiB"."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{f'{value:.1f}'.removesuffix('.0')} {unit}"


@dataclass(frozen=True)
class ServerLimits:
    """The memory limit and profile that the spawner gave this server."""

    mem_limit: int | None = None
    profile: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ServerLimits:
        """Read ``MEM_LIMIT`` (bytes) and ``KIOSKHUB_PROFILE``; unset or unusable gives None."""
        mem_limit = environ.get("MEM_LIMIT", "").strip()
        return cls(
            mem_limit=int(mem_limit) if mem_limit.isdigit() and int(mem_limit) > 0 else None,
            profile=environ.get("KIOSKHUB_PROFILE", "").strip() or None,
        )

    def notice(self, restarted: bool = True) -> str:
        """The text shown under the cell whose kernel was killed."""
        limit = "its memory limit"
        if self.mem_limit:
            limit += f" of {format_bytes(self.mem_limit)}"
        if self.profile:
            limit += f" (profile '{self.profile}')"
        if restarted:
            after = "The kernel has restarted, so earlier variables are gone."
        else:
            after = "The kernel could not be restarted; start it again from the Kernel menu."
        return (
            f"The kernel was stopped: your server reached {limit}. {after} "
            "Use less memory, or start your server with a larger profile."
        )


# --- which cell was running ---------------------------------------------------------------


class RunningCell:
    """Which execute_request the kernel was working on, to parent the notice to it.

    The kernel runs execute_requests in the order they arrive; it publishes ``busy`` and
    ``idle`` on iopub naming each, and answers each with an execute_reply on shell. Its
    threads send these only when they get the GIL, so a kernel killed inside a C call
    that holds it (``b"x" * 2**31``) may leave the last ones unsent. The fallback is the
    oldest execute_request this client sent that has neither gone idle nor been answered:
    after "Run All", the cell that was running rather than the last one queued.
    """

    MAX_PENDING = 10_000

    def __init__(self) -> None:
        self._busy: dict | None = None
        self._pending: dict[str, dict] = {}  # msg_id -> header, oldest first

    def sent(self, header: dict) -> None:
        """The client sent a request on the shell channel."""
        if header.get("msg_type") != "execute_request" or "msg_id" not in header:
            return
        self._pending[header["msg_id"]] = header
        if len(self._pending) > self.MAX_PENDING:
            del self._pending[next(iter(self._pending))]

    def status(self, execution_state: str, parent_header: dict) -> None:
        """The kernel published a status on iopub."""
        msg_id = parent_header.get("msg_id")
        if execution_state == "busy" and parent_header.get("msg_type") == "execute_request":
            self._busy = parent_header
            if msg_id in self._pending:  # the requests sent before it have finished
                for earlier in list(self._pending):
                    if earlier == msg_id:
                        break
                    del self._pending[earlier]
        elif execution_state == "idle":
            self.finished(msg_id)
        elif execution_state == "starting":
            self.forget()

    def finished(self, msg_id: str | None) -> None:
        """The request went idle, or its reply came back."""
        self._pending.pop(msg_id, None)
        if self._busy is not None and self._busy.get("msg_id") == msg_id:
            self._busy = None

    def current(self) -> dict | None:
        """The header of the request that was running, or None."""
        return self._busy or next(iter(self._pending.values()), None)

    def forget(self) -> None:
        """The kernel died: whatever it was running or had queued is gone."""
        self._busy = None
        self._pending.clear()


# --- the kernel websocket connection ------------------------------------------------------


class MemoryNoticeConnection(ZMQChannelsWebsocketConnection):
    """Kernel websocket connection that explains kernel deaths caused by the memory limit.

    Counters are read when the connection opens and after every restart, so each
    OOM kill is reported once, on every connection open to the kernel that died.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._limits = ServerLimits.from_environ(os.environ)
        self._cgroup: MemoryCgroup | None = None
        self._events = MemoryEvents()
        self._running = RunningCell()

    def connect(self):
        """Remember the cgroup's counters, then connect as the base class does."""
        self._cgroup = MemoryCgroup.of_this_process()
        if self._cgroup is None:
            self.log.debug("No memory cgroup found; kernel OOM kills will not be explained")
        self._events = self._read_events()
        return super().connect()

    def handle_incoming_message(self, incoming_msg) -> None:
        """Note the client's execute_requests, then forward as the base class does."""
        header = self._shell_header(incoming_msg)
        if header is not None:
            self._running.sent(header)
        super().handle_incoming_message(incoming_msg)

    def handle_outgoing_message(self, stream, outgoing_msg) -> None:
        """Note the kernel's statuses and replies, then forward as the base class does."""
        channel = stream if isinstance(stream, str) else getattr(stream, "channel", None)
        if channel in ("iopub", "shell"):
            self._note_progress(outgoing_msg)
        super().handle_outgoing_message(stream, outgoing_msg)

    def on_kernel_restarted(self):
        """The restarter found the kernel dead and restarts it."""
        # The notice goes before the base class's "restarting" status: on that status
        # JupyterLab drops the running cell's future, and with it any later output.
        self._explain_if_out_of_memory(restarted=True)
        super().on_kernel_restarted()

    def on_restart_failed(self):
        """The restarter gave up on the kernel."""
        self._explain_if_out_of_memory(restarted=False)
        super().on_restart_failed()

    def _read_events(self) -> MemoryEvents:
        return self._cgroup.events() if self._cgroup is not None else MemoryEvents()

    def _explain_if_out_of_memory(self, restarted: bool) -> None:
        try:
            iopub = self.channels.get("iopub")
            if iopub is not None and not iopub.closed():
                iopub.flush()  # the kernel's last messages first, its busy status among them
            before, after = self._events, self._read_events()
            self._events = after
            exit_status = _exit_status(self.kernel_manager)
            if killed_for_memory(before, after, exit_status):
                self.log.warning(
                    "Kernel %s was killed at the server's memory limit (%s, profile %s): "
                    "cgroup OOM kills %s -> %s, exit status %s",
                    self.kernel_id,
                    format_bytes(self._limits.mem_limit) if self._limits.mem_limit else "unknown",
                    self._limits.profile or "unknown",
                    before.oom_kills,
                    after.oom_kills,
                    exit_status,
                )
                self._write_stream("stderr", self._limits.notice(restarted) + "\n")
        except Exception:
            self.log.exception(
                "Could not check whether kernel %s ran out of memory", self.kernel_id
            )
        finally:
            self._running.forget()

    def _write_stream(self, name: str, text: str) -> None:
        """Send an iopub stream message, serialised as the base class sends its status."""
        msg = self.session.msg(
            "stream", {"name": name, "text": text}, parent=self._running.current() or {}
        )
        try:
            if self.subprotocol == WS_PROTOCOL_V1:
                frame = serialize_msg_to_ws_v1(msg, "iopub", self.session.pack)
                self.write_message(frame, binary=True)
            else:
                msg["channel"] = "iopub"
                self.write_message(json.dumps(msg, default=json_default))
        except WebSocketClosedError:
            self.log.warning("Client of kernel %s left before the memory notice", self.kernel_id)

    def _shell_header(self, ws_msg) -> dict | None:
        """The header of a client message on the shell channel, decoded as the base class does."""
        try:
            if self.subprotocol == WS_PROTOCOL_V1:
                channel, msg_list = deserialize_msg_from_ws_v1(ws_msg)
                return self.session.unpack(msg_list[0]) if channel == "shell" else None
            msg = (
                deserialize_binary_message(ws_msg)
                if isinstance(ws_msg, bytes)
                else json.loads(ws_msg)
            )
            return msg.get("header") if msg.get("channel", "shell") in ("shell", None) else None
        except Exception:
            return None  # the base class reports malformed messages

    def _note_progress(self, msg_list) -> None:
        """Feed a kernel's status or execute_reply (header, parent, content) to RunningCell."""
        try:
            _, parts = self.session.feed_identities(msg_list)
            msg_type = self.session.unpack(parts[1]).get("msg_type")
            if msg_type == "status":
                content = self.session.unpack(parts[4])
                self._running.status(
                    content.get("execution_state", ""), self.session.unpack(parts[2])
                )
            elif msg_type == "execute_reply":
                self._running.finished(self.session.unpack(parts[2]).get("msg_id"))
        except Exception:
            return  # the base class reports malformed messages


def _exit_status(kernel_manager) -> int | None:
    """The dead kernel's exit status where its provisioner holds the process (local kernels)."""
    process = getattr(getattr(kernel_manager, "provisioner", None), "process", None)
    status = getattr(process, "returncode", None)
    return status if isinstance(status, int) else None


# --- server extension ---------------------------------------------------------------------


def _jupyter_server_extension_points():
    return [{"module": "kioskhub.extensions.memory_notice"}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Use MemoryNoticeConnection for kernel websockets, unless a site chose another class.

    Extensions load after the web app has copied the connection class into its settings,
    so both the trait and the setting are replaced.
    """
    current = serverapp.web_app.settings.get("kernel_websocket_connection_class")
    if isinstance(current, type) and issubclass(current, MemoryNoticeConnection):
        return
    if current is not ZMQChannelsWebsocketConnection:
        serverapp.log.warning(
            "memory_notice: kernel websocket connection class is %s, not the default; "
            "kernel OOM kills will not be explained",
            current,
        )
        return
    serverapp.kernel_websocket_connection_class = MemoryNoticeConnection
    serverapp.web_app.settings["kernel_websocket_connection_class"] = MemoryNoticeConnection
    serverapp.log.info("memory_notice: kernels killed at the memory limit will be explained")
