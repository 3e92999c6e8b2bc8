"""The warm parent of a fork server: imports a server's code once, forks a child per start.

Run by an environment's own python (``ENV/bin/python fork_parent.py CONTROL_FD PRELOAD_JSON``,
see ``fork_servers``), so this file imports only the standard library and, by file path,
the launcher's isolation steps (``local_launcher``, ``root_paths``), which do too.

The parent imports what ``jupyterhub-singleuser`` needs, checks that nothing that cannot
survive a fork exists (no thread besides the main one, no event loop, no ZMQ context),
says ``ready`` on the control socket and then waits there for ``fork`` messages. Each one
carries one end of a fresh socket pair; the parent forks and closes its copy. The parent
never reads a request's content: the child receives it (environment, tokens, its log)
on that private pair, so no user's secret is ever in the memory the next child inherits.

The child does what the launcher does for a fresh start, in the same order (private
mounts, the server's cgroups, the account, no new privileges, the home), sets its own
environment and random seeds, and runs ``jupyterhub.singleuser.main()``. Where the hub
asks for it (``spawner.fork_kernels``), it first forks its server's kernel zygote
(``kernel_zygote``) and makes the zygote's provisioner (``forked_kernels``) the server's.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import importlib
import json
import os
import random
import signal
import socket
import sys
import threading
import types

SPAWNER_DIR = os.path.dirname(os.path.abspath(__file__))
PR_SET_NAME = 15
PR_SET_DUMPABLE = 4
MAX_REQUEST_BYTES = 1 << 20
SERVER_MODULES = (
    "jupyterhub.singleuser",
    "jupyter_server.serverapp",
    "jupyter_server.services.kernels.kernelmanager",
    "jupyter_server.services.contents.largefilemanager",
    "jupyter_server.services.sessions.sessionmanager",
    "jupyterlab.labapp",
    # What they import only while a server starts; measured: 0.1-0.2 CPU-seconds per server.
    "httpcore",  # with h11 and trio: httpx's transport, for JupyterLab's PyPI manager
    "jinja2.ext",
    "jupyter_core.migrate",
    "jupyter_server.kernelspecs.handlers",
    "jupyter_server.nbconvert.handlers",
    "jupyter_server.services.api.handlers",
    "jupyter_server.services.config.handlers",
    "jupyter_server.services.contents.handlers",
    "jupyter_server.services.events.handlers",
    "jupyter_server.services.kernels.handlers",
    "jupyter_server.services.kernelspecs.handlers",
    "jupyter_server.services.nbconvert.handlers",
    "jupyter_server.services.security.handlers",
    "jupyter_server.services.sessions.handlers",
    "jupyter_server.services.shutdown",
    "jupyter_server.view.handlers",
)
"""Imported by every parent: the server and its application, as ``jupyterhub-singleuser``
loads them, and the modules they import later, while the server starts (none of which
reads the environment or the home at import). Extensions come on top
(``extension_modules``)."""


def load_isolation_steps() -> types.ModuleType:
    """``local_launcher`` from KioskHub's own files, as a private package (the environment
    may hold another KioskHub, or none)."""
    package = types.ModuleType("_kioskhub_fork")
    package.__path__ = [SPAWNER_DIR]
    sys.modules["_kioskhub_fork"] = package
    return importlib.import_module("_kioskhub_fork.local_launcher")


def extension_modules(prefix: str) -> list[str]:
    """Server extensions the environment enables in its own config (``etc/jupyter``)."""
    folder = os.path.join(prefix, "etc", "jupyter", "jupyter_server_config.d")
    names: list[str] = []
    try:
        files = sorted(os.listdir(folder))
    except OSError:
        return names
    for file in files:
        try:
            with open(os.path.join(folder, file)) as handle:
                enabled = json.load(handle)["ServerApp"]["jpserver_extensions"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        names += [name for name, on in enabled.items() if on]
    return names


def preload(modules: list[str]) -> None:
    """Import the server's modules; one an environment lacks is skipped (the server will
    treat it as a fresh start does)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken extension is the server's to report
            continue


def discard_idle_loop() -> None:
    """Close an event loop an import made and left idle (``dask_labextension``'s imports
    do), with its sockets; the server makes its own, as a fresh one does."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is None or asyncio.events._get_running_loop() is not None:
        return
    loop = getattr(asyncio.get_event_loop_policy()._local, "_loop", None)
    if loop is not None and not loop.is_running():
        loop.close()
        asyncio.set_event_loop(None)


def fork_hazards(control_fd: int) -> list[str]:
    """What would not survive a fork: threads, an event loop, a ZMQ context, a socket."""
    hazards = [
        f"thread {t.name}" for t in threading.enumerate() if t is not threading.main_thread()
    ]
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and (
        asyncio.events._get_running_loop() is not None
        or getattr(asyncio.get_event_loop_policy()._local, "_loop", None) is not None
    ):
        hazards.append("an event loop")
    zmq = sys.modules.get("zmq")
    if zmq is not None and getattr(zmq.Context, "_instance", None) is not None:
        hazards.append("a ZMQ context")
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:") and int(fd) != control_fd:
            hazards.append(f"an open socket (fd {fd})")
    return hazards


def serve(control: socket.socket, launcher: types.ModuleType) -> None:
    """Fork a child for each ``fork`` message until the hub closes the control socket."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(control, 64, 1)
        except InterruptedError:
            continue
        if not message:
            return
        if message != b"fork" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        pid = os.fork()
        if pid == 0:
            run_child(control, fds[0], launcher)
        os.close(fds[0])


def run_child(control: socket.socket, channel_fd: int, launcher: types.ModuleType) -> None:
    """Become one user's server; never returns."""
    status = 70
    channel = None
    try:
        control.close()
        os.setsid()
        for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_DFL)
        channel = socket.socket(fileno=channel_fd)
        channel.sendall(json.dumps({"pid": os.getpid()}).encode())
        message, fds, _flags, _address = socket.recv_fds(channel, MAX_REQUEST_BYTES, 1)
        request = json.loads(message)
        take_log(fds[0])
        os.closerange(3, channel.fileno())
        os.closerange(channel.fileno() + 1, 65536)
        isolate(request["plan"], launcher, request["argv"][0])
        os.environ.clear()  # libc's environ no longer points at the initial block ...
        os.environ.update(request["env"])
        show_environment(request["env"])  # ... which now holds this server's
        random.seed()
        reread_environment_config()
        sys.argv = list(request["argv"])
        channel.sendall(b'{"running": true}')
        channel.close()
        channel = None
        if request.get("fork_kernels"):
            start_kernel_zygote()
        status = run_server()
    except BaseException as error:  # noqa: BLE001 - reported to the hub, then exit
        line = f"kioskhub launcher: cannot start the server: {describe(error, launcher)}"
        print(line, file=sys.stderr, flush=True)
        if channel is not None:
            try:
                channel.sendall(json.dumps({"error": line, "status": status}).encode())
            except OSError:
                pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def start_kernel_zygote() -> None:
    """Fork this server's kernel zygote (``kernel_zygote``) and make its provisioner
    (``forked_kernels``) the server's; where that fails, kernels start as new processes."""
    try:
        zygote = importlib.import_module("_kioskhub_fork.kernel_zygote")
        control, pid = zygote.start(prepare_kernel)
        importlib.import_module("_kioskhub_fork.forked_kernels").install(control, pid)
    except Exception as error:  # noqa: BLE001 - the server runs; its kernels start fresh
        print(f"kioskhub: no kernel zygote ({type(error).__name__}: {error})", file=sys.stderr)


def prepare_kernel(env: dict[str, str]) -> None:
    """What a kernel forked from the zygote does once its environment is set, as a forked
    server does: show it in ``/proc``, read configuration taken at import again, and set
    what the debugger's import sets in a fresh kernel's ``os.environ`` (``forked_kernels``
    starts a kernel whose environment names the debugger's variables fresh)."""
    show_environment(env)
    reread_environment_config()
    if "debugpy._vendored.force_pydevd" in sys.modules:
        os.environ.setdefault("PYDEVD_USE_FRAME_EVAL", "NO")


def reread_environment_config() -> None:
    """Read again what a preloaded module took from the parent's environment and home when
    it was imported: dask's configuration (``dask.config``, imported with the Dask lab
    extension), where the server finds its gateway (``DASK_GATEWAY__*`` variables) and the
    user's ``~/.config/dask``."""
    config = sys.modules.get("dask.config")
    if config is None:
        return
    if hasattr(config, "_get_paths"):
        config.paths[:] = config._get_paths()
    home_config = os.path.join(os.path.expanduser("~"), ".config", "dask")
    config.PATH = os.environ.get("DASK_CONFIG", home_config)
    config.refresh()


def take_log(log_fd: int) -> None:
    """stdout and stderr to the server's log; stdin from /dev/null, as a fresh start."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


def isolate(plan: dict, launcher: types.ModuleType, argv0: str) -> None:
    """The launcher's steps (``local_launcher.main``), then the name a fresh server has."""
    if plan["binds"]:
        launcher.private_mounts(plan["binds"], plan["home"], plan["uid"])
    launcher.enter_cgroups(plan["cgroup_procs"])
    if plan["uid"] is not None:
        launcher.become(plan["initgroups"], plan["uid"], plan["gid"], plan["groups"])
        # A fresh server is exec'd by its account, which makes it dumpable; so is this one
        # (it holds nothing but what the parent imported).
        launcher._check(launcher._libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "prctl(DUMPABLE)")
    os.chdir(plan["home"])
    name = os.path.basename(argv0)[:15].encode()
    launcher._libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def show_environment(env: dict[str, str]) -> None:
    """Write ``env`` over the process's initial environment block (the parent's, which
    ``fork_choice.parent_environment`` pads), as ``/proc/<pid>/environ`` shows it; left as
    it is where it does not fit."""
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    start, end = int(fields[47]), int(fields[48])  # env_start, env_end (proc(5) 50, 51)
    block = b"".join(f"{key}={value}".encode() + b"\0" for key, value in env.items())
    if start and len(block) <= end - start:
        ctypes.memmove(start, block.ljust(end - start, b"\0"), end - start)


def run_server() -> int:
    """``jupyterhub-singleuser``'s script: ``sys.exit(main())``, with exit handlers."""
    from jupyterhub.singleuser import main

    try:
        code = main()
    except SystemExit as leaving:
        code = leaving.code
    atexit._run_exitfuncs()
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def describe(error: BaseException, launcher: types.ModuleType) -> str:
    if isinstance(error, OSError):
        return launcher.root_paths.describe(error)
    return f"{type(error).__name__}: {error}"


def main(argv: list[str]) -> None:
    control = socket.socket(fileno=int(argv[1]))
    # As ``jupyterhub-singleuser`` sees it: its own folder first on the path, not this one's.
    sys.path[0] = os.path.join(sys.prefix, "bin")
    launcher = load_isolation_steps()
    preload([*SERVER_MODULES, *json.loads(argv[2]), *extension_modules(sys.prefix)])
    discard_idle_loop()
    hazards = fork_hazards(control.fileno())
    if hazards:
        control.sendall(json.dumps({"refused": "not safe to fork: " + ", ".join(hazards)}).encode())
        return
    gc.collect()
    gc.freeze()  # keep the imported objects' pages shared with the children
    control.sendall(json.dumps({"ready": os.getpid()}).encode())
    serve(control, launcher)


if __name__ == "__main__":
    main(sys.argv)
