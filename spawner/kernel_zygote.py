"""A forked server's kernel zygote: forks one IPython kernel per start, already imported.

Loaded by ``fork_parent`` (standard library only; by file path, as ``local_launcher`` is).
A forked server's child, once it is the user's (account, mounts, cgroup, environment,
home), forks the zygote before its server starts, so the zygote has what the fork
server's parent imported (``ipykernel`` and IPython among it), runs as the user in the
server's mount namespace and cgroup, and holds nothing but what the user's own server
holds: no thread, no event loop, no ZMQ context (the parent checked).

The server (``forked_kernels``) sends ``kernel`` on the control socket with one end of a
fresh socket pair; the zygote forks and keeps its copy of that end to report the kernel's
exit status. The kernel child reads the start (argv, environment, folder) on that pair,
becomes what ``python -m ipykernel_launcher`` is (its own session, environment and
folder, new random seeds), says ``running`` and runs ``IPKernelApp``. The zygote exits
when the server closes the control socket (the server has stopped).
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import json
import os
import random
import selectors
import signal
import socket
import sys
from collections.abc import Callable

PR_SET_NAME = 15
MAX_REQUEST_BYTES = 1 << 20
ZYGOTE_NAME = b"kernel-zygote"


def start(prepare: Callable[[dict[str, str]], None]) -> tuple[socket.socket, int]:
    """Fork the zygote; the server's end of its control socket and the zygote's pid.
    ``prepare(env)`` is what a kernel child does once its environment is set (the fork
    server's own steps: ``/proc`` environment, configuration read at import)."""
    server_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            server_end.close()
            name(ZYGOTE_NAME)
            serve(zygote_end, prepare)
        except BaseException:  # noqa: BLE001 - the server's kernels then start fresh
            status = 70
        finally:
            os._exit(status)
    zygote_end.close()
    return server_end, pid


def name(comm: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(comm[:15]), 0, 0, 0)


def serve(control: socket.socket, prepare: Callable[[dict[str, str]], None]) -> None:
    """Fork a kernel per ``kernel`` message; report each one's exit status on its pair."""
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    kernels: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, channel)
    while True:
        for key, _events in selector.select():
            if key.fileobj is control:
                message, fds, _flags, _address = socket.recv_fds(control, 64, 1)
                if not message:
                    return
                if message != b"kernel" or len(fds) != 1:
                    for fd in fds:
                        os.close(fd)
                    continue
                channel = socket.socket(fileno=fds[0])
                pid = os.fork()
                if pid == 0:
                    run_kernel(channel, prepare)
                pidfd = os.pidfd_open(pid)
                kernels[pidfd] = (pid, channel)
                selector.register(pidfd, selectors.EVENT_READ)
            else:
                pidfd = key.fd
                pid, channel = kernels.pop(pidfd)
                selector.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                report = {"exit": os.waitstatus_to_exitcode(status)}
                try:
                    channel.sendall(json.dumps(report).encode())
                except OSError:
                    pass  # the server no longer watches this kernel
                channel.close()


def run_kernel(channel: socket.socket, prepare: Callable[[dict[str, str]], None]) -> None:
    """Become ``python -m ipykernel_launcher -f CONNECTION_FILE``; never returns."""
    status = 70
    try:
        os.setsid()
        request = json.loads(channel.recv(MAX_REQUEST_BYTES))
        os.closerange(3, channel.fileno())
        os.closerange(channel.fileno() + 1, 65536)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        random.seed()
        prepare(request["env"])
        argv = list(request["argv"])
        name(os.path.basename(argv[0]).encode())
        # As ``python -m ipykernel_launcher`` has them; its own first step then takes the
        # folder off the path again.
        sys.argv = [importlib.util.find_spec("ipykernel_launcher").origin, *argv[3:]]
        sys.orig_argv = argv
        del sys.path[0]
        channel.sendall(json.dumps({"running": os.getpid()}).encode())
        channel.close()
        channel = None
        status = run_ipykernel()
    except BaseException as error:  # noqa: BLE001 - reported to the server, then exit
        line = f"kioskhub: cannot start the kernel: {type(error).__name__}: {error}"
        print(line, file=sys.stderr, flush=True)
        if channel is not None:
            try:
                channel.sendall(json.dumps({"error": line}).encode())
            except OSError:
                pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def run_ipykernel() -> int:
    """``ipykernel_launcher``'s ``__main__``, with exit handlers."""
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from ipykernel.kernelapp import IPKernelApp

    # ``IPKernelApp`` read the parent's pid (JPY_PARENT_PID, which its parent poller
    # watches) when the fork server imported it; this kernel's is in its own environment.
    parent = int(os.environ.get("JPY_PARENT_PID") or 0)
    try:
        IPKernelApp.launch_instance(parent_handle=parent)
        code = 0
    except SystemExit as leaving:
        code = leaving.code
    atexit._run_exitfuncs()
    if code is None:
        return 0
    return code if isinstance(code, int) else 1
