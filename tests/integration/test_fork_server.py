"""Fork servers on the local backend as root: a forked server is what a fresh one is.

A real hub as root, real kh- accounts, mount namespaces and cgroups. The same user's
server is started forked, then (the hub restarted with ``spawner.fork_server: false``)
freshly, and the two are compared as the user sees them; a second user's forked server
is searched for anything of the first; the control channel is attacked from a notebook.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import yaml

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

VOLATILE = {
    "JUPYTERHUB_API_TOKEN",
    "JPY_API_TOKEN",
    "JUPYTERHUB_SERVICE_URL",
    "KIOSKHUB_SERVER_STARTED",
    "JPY_PARENT_PID",
    "JPY_SESSION_NAME",
}
"""Variables that differ between any two starts (a new token, port, start time, pid)."""

VIEW = """
import json, os, resource, sys
names = [n for n in dir(resource) if n.startswith("RLIMIT_")]
limits = [resource.getrlimit(getattr(resource, n)) for n in names]
kernel = {
    "path": sys.path, "cwd": os.getcwd(), "executable": sys.executable,
    # The connection file's name is new at each start; its folder is not.
    "argv": [os.path.dirname(a) if a.endswith(".json") else a for a in sys.argv],
    "ids": [os.getuid(), os.geteuid(), os.getgid(), sorted(os.getgroups())],
    "session_leader": os.getsid(0) == os.getpid(), "limits": limits, "umask": os.umask(0o22),
}
server = os.getppid()
if open(f"/proc/{server}/comm").read() == "kernel-zygote\\n":  # a forked kernel's parent
    server = int(open(f"/proc/{server}/status").read().split("PPid:")[1].split()[0])
print(json.dumps({
    "env": dict(os.environ), "server": server, "kernel": os.getpid(),
    "kernel_view": kernel,
}))
"""


@pytest.fixture(scope="module")
def site(second_venv):
    if os.geteuid() != 0:
        pytest.fail("fork servers serve isolated servers as root; run these tests as root")
    folder = open_folder("fork")
    write_sample_data(folder / "data")
    marker_folder = folder / "markers"
    marker_folder.mkdir(mode=0o1777)
    marker_folder.chmod(0o1777)
    hostile = hostile_venv(folder / "hostile", second_venv, marker_folder / "imported-by")
    config = write_site_config(
        folder,
        environments=[
            {"name": "default", "display_name": "Python 3", "default": True},
            {"name": "analysis", "path": str(second_venv)},
            {"name": "hostile", "path": str(hostile)},
        ],
        profiles=[{"name": "small", "cpu": 0.5, "memory": "400Mi", "max_processes": 200}],
        data_mounts=[
            {"name": "data", "source": "data", "mount_path": str(folder / "mnt" / "data")}
        ],
        spawner={"fork_server_prewarm": ["analysis"]},
    )
    hub = start_hub(config, folder / "hub.log")
    state = {
        "hub": hub,
        "folder": folder,
        "config": config,
        "markers": marker_folder,
        "venv": second_venv,
    }
    yield state
    if state["hub"].process.poll() is None:
        state["hub"].stop()
    shutil.rmtree(folder, ignore_errors=True)


def hostile_venv(path: Path, server_venv: Path, marker: Path) -> Path:
    """A venv of the site's config whose site-packages a user could write: its ``.pth``
    runs at every import of the venv and records which account imported it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site_packages = next(path.glob("lib/python*/site-packages"))
    server_packages = next(server_venv.glob("lib/python*/site-packages"))
    (site_packages / "server.pth").write_text(f"{server_packages}\n")
    hostile = site_packages / "zz_hostile.pth"
    hostile.write_text("import os; open(f'" + str(marker) + "-{os.geteuid()}', 'w').close()\n")
    os.chown(hostile, 65534, 65534)  # as if an account other than root had written it
    script = path / "bin" / "jupyterhub-singleuser"
    script.write_text(
        f"#!{path}/bin/python\nimport sys\nfrom jupyterhub.singleuser import main\n"
        "sys.exit(main())\n"
    )
    script.chmod(0o755)
    return path


def server_log(site, username: str) -> Path:
    return site["folder"] / "state" / "logs" / f"{username}.log"


def start(site, session: UserSession, options: dict | None = None) -> None:
    events = session.spawn(options)
    assert events[-1].get("ready"), events


def user(site, name: str) -> UserSession:
    return signed_in(site["hub"].url, name, SHARED_PASSWORD)


def fork_parents(hub) -> list[psutil.Process]:
    parents = []
    for pid in hub.record_descendants():
        try:
            process = psutil.Process(pid)
            # Its children, the servers, show its command line too, but run as their users.
            cmdline = process.cmdline()
            if any(p.endswith("fork_parent.py") for p in cmdline) and process.uids().real == 0:
                parents.append(process)
        except psutil.NoSuchProcess:
            pass
    return parents


def wait_for(condition, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("condition not met in time")


def user_view(session: UserSession, site) -> dict:
    """Everything of the server and a kernel a user can look at, but what differs between
    any starts."""
    kernel_id = start_kernel(session)
    try:
        return running_view(session, site, kernel_id)
    finally:
        session.server(f"/api/kernels/{kernel_id}", "DELETE")


def running_view(session: UserSession, site, kernel_id: str) -> dict:
    reply = session._execute_in(kernel_id, VIEW, 60)
    assert reply["error"] is None, reply
    seen = json.loads(reply["stdout"])
    pid, kernel = seen["server"], seen["kernel"]
    status = Path(f"/proc/{pid}/status").read_text()
    fields = ("Uid", "Gid", "Groups", "NoNewPrivs", "CapInh", "CapPrm", "CapEff", "CapBnd")
    log = server_log(site, session.username).read_text()  # each start begins a new log
    return {
        "status": [line for line in status.splitlines() if line.split(":")[0] in fields],
        # The host's other mounts come and go with other work on the machine.
        "mounts": sorted(m for m in mount_lines(pid) if m.startswith((str(site["folder"]), "/ "))),
        "cgroup": Path(f"/proc/{pid}/cgroup").read_text(),
        "limits": cgroup_limits(pid),
        "env": {k: v for k, v in seen["env"].items() if k not in VOLATILE},
        "env_keys": sorted(seen["env"]),
        # What `ps e` and psutil read: the server's own environment, not its parent's.
        "proc_environ": {
            k: v for k, v in psutil.Process(pid).environ().items() if k not in VOLATILE
        },
        "cwd": os.readlink(f"/proc/{pid}/cwd"),
        "exe": os.readlink(f"/proc/{pid}/exe"),
        "comm": Path(f"/proc/{pid}/comm").read_text(),
        "linked": sorted(set(re.findall(r"(\S+) \| extension was successfully linked", log))),
        "loaded": sorted(set(re.findall(r"(\S+) \| extension was successfully loaded", log))),
        "lab": sorted(e["name"] for e in session.server("/lab/api/extensions").json()),
        # The kernel: what it sees of itself, and what the system shows of it.
        "kernel": seen["kernel_view"],
        "kernel_status": [
            line
            for line in Path(f"/proc/{kernel}/status").read_text().splitlines()
            if line.split(":")[0] in fields
        ],
        "kernel_mounts": sorted(
            m for m in mount_lines(kernel) if m.startswith((str(site["folder"]), "/ "))
        ),
        "kernel_cgroup": Path(f"/proc/{kernel}/cgroup").read_text(),
        "kernel_limits": cgroup_limits(kernel),
        "kernel_proc_environ": {
            k: v for k, v in psutil.Process(kernel).environ().items() if k not in VOLATILE
        },
        "kernel_cwd": os.readlink(f"/proc/{kernel}/cwd"),
        "kernel_comm": Path(f"/proc/{kernel}/comm").read_text(),
    }


def mount_lines(pid: int) -> list[str]:
    """Mount points with their options and file systems (not their per-namespace ids)."""
    lines = []
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        lines.append(" ".join([fields[4], fields[5], *fields[separator + 1 :]]))
    return lines


def cgroup_limits(pid: int) -> dict[str, str]:
    limits = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        roots = (
            [Path("/sys/fs/cgroup")]
            if not controllers
            else [Path("/sys/fs/cgroup") / c for c in controllers.split(",")]
        )
        for root in roots:
            for name in (
                "memory.max",
                "cpu.max",
                "pids.max",
                "memory.limit_in_bytes",
                "cpu.cfs_quota_us",
            ):
                file = root / path.lstrip("/") / name
                if file.exists():
                    limits[f"{root.name}/{name}"] = file.read_text().strip()
    return limits


def server_fds(pid: int) -> set[str]:
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return targets


def memory_holds(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the readable memory of process ``pid``."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as memory:
        for line in maps:
            span, perms = line.split()[:2]
            if "r" not in perms or line.rstrip().endswith("[vvar]"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                memory.seek(start)
                if needle in memory.read(end - start):
                    return True
            except (OSError, ValueError, OverflowError):
                continue
    return False


@pytest.fixture(scope="module")
def forked(site):
    """ada and bob started from fork servers (ada in the pre-warmed environment)."""
    ada, bob = user(site, "ada"), user(site, "bob")
    start(site, ada, {"environment": "analysis"})
    start(site, bob)
    log = site["hub"].log_text()
    about_forks = "\n".join(line for line in log.splitlines() if "fork server" in line.lower())
    assert "Forked the server of ada" in log and "Forked the server of bob" in log, about_forks
    views = {"ada_view": user_view(ada, site), "bob_view": user_view(bob, site)}
    for name in ("ada", "bob"):
        text = server_log(site, name).read_text()
        assert "Forked kernel" in text, [line for line in text.splitlines() if "ernel" in line]
    return {"ada": ada, "bob": bob, **views}


def test_the_prewarmed_parent_was_ready_before_anyone_started(site, forked):
    log = site["hub"].log_text()
    ready = log.index("Fork server of")
    assert ready < log.index("Forked the server of ada")
    parents = fork_parents(site["hub"])
    assert len(parents) == 2  # analysis (pre-warmed) and default (lazily, for bob)


def test_nothing_of_one_user_is_in_anothers_forked_server(site, forked):
    ada_env, bob_env = forked["ada_view"]["env"], forked["bob_view"]["env"]
    ada_token = (
        forked["ada"]
        .execute("import os; print(os.environ['JUPYTERHUB_API_TOKEN'])")["stdout"]
        .strip()
    )
    assert len(ada_token) >= 32
    bob_server = json.loads(forked["bob"].execute(VIEW)["stdout"])["server"]
    ada_server = json.loads(forked["ada"].execute(VIEW)["stdout"])["server"]
    assert not any("ada" in value for value in bob_env.values())
    assert bob_env["USER"] == "kh-bob" and ada_env["USER"] == "kh-ada"
    # The token is in ada's server, never in bob's nor in the parents they came from.
    assert memory_holds(ada_server, ada_token.encode())
    assert not memory_holds(bob_server, ada_token.encode())
    for parent in fork_parents(site["hub"]):
        assert not memory_holds(parent.pid, ada_token.encode())
    # No descriptor in common: no log, pipe or socket of ada's, none of the parents'.
    shared = server_fds(bob_server) & server_fds(ada_server)
    for parent in fork_parents(site["hub"]):
        shared |= server_fds(bob_server) & server_fds(parent.pid)
    assert {t for t in shared if t.startswith(("socket:", "pipe:", "/tmp", "/work"))} == set()


def test_a_user_cannot_reach_the_control_channel(site, forked):
    parents = fork_parents(site["hub"])
    sockets = sorted(
        int(t[8:-1]) for p in parents for t in server_fds(p.pid) if t.startswith("socket:")
    )
    assert sockets
    attack = (
        "import os, signal\n"
        f"parents, sockets = {[p.pid for p in parents]}, {sockets}\n"
        "server = os.getppid()\n"
        "if open(f'/proc/{server}/comm').read() == 'kernel-zygote\\n':\n"
        "    server = int(open(f'/proc/{server}/status').read().split('PPid:')[1].split()[0])\n"
        "print(open(f'/proc/{server}/status').read().split('PPid:')[1].split()[0])\n"
        "for pid in parents:\n"
        "    for how in ('fd', 'mem', 'environ'):\n"
        "        try:\n"
        "            path = f'/proc/{pid}/{how}'\n"
        "            os.listdir(path) if how == 'fd' else open(path, 'rb').read(1)\n"
        "            print(how, 'open')\n"
        "        except OSError as error:\n"
        "            print(how, error.strerror)\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGTERM); print('kill', 'sent')\n"
        "    except OSError as error:\n"
        "        print('kill', error.strerror)\n"
        "named = [l.split() for l in open('/proc/net/unix').read().splitlines()[1:]]\n"
        "print('named', [l[7] for l in named if len(l) > 7 and int(l[6]) in sockets])\n"
    )
    reply = forked["bob"].execute(attack)
    assert reply["error"] is None, reply
    lines = reply["stdout"].splitlines()
    assert int(lines[0]) in {p.pid for p in parents}  # the user sees their parent's pid ...
    denied = lines[1:-1]
    assert denied == [
        "fd Permission denied",
        "mem Permission denied",
        "environ Permission denied",
        "kill Operation not permitted",
    ] * len(parents)
    assert lines[-1] == "named []"  # ... but no way to it: no socket with a name
    assert all(p.is_running() for p in parents)


def test_a_venv_others_could_write_is_never_imported_by_root(site, forked):
    carol = user(site, "carol")
    assert carol.spawn({"environment": "hostile"})[-1].get("ready")
    log = site["hub"].log_text()
    assert "Starting carol without a fork server: not started as root:" in log
    assert "zz_hostile.pth is writable by an account other than root" in log
    imported = sorted(p.name for p in site["markers"].iterdir())
    carol_uid = psutil.Process(json.loads(carol.execute(VIEW)["stdout"])["server"]).uids().real
    assert imported == [f"imported-by-{carol_uid}"]  # the user's own account, never root (0)
    carol.stop_server()


def test_a_changed_environment_gets_a_new_parent_and_a_dead_one_comes_back(site, forked):
    hub = site["hub"]
    zygote = int(forked["ada"].execute("import os; print(os.getppid())")["stdout"])
    assert Path(f"/proc/{zygote}/comm").read_text() == "kernel-zygote\n"
    forked["ada"].stop_server()
    wait_for(lambda: not psutil.pid_exists(zygote), timeout=20)  # it stops with its server
    before = {p.pid for p in fork_parents(hub)}
    analysis = next(p for p in fork_parents(hub) if p.cmdline()[0].startswith(str(site["venv"])))
    os.kill(analysis.pid, signal.SIGKILL)
    wait_for(lambda: "exited (status -9)" in hub.log_text())
    # Pre-warmed: it comes back by itself.
    wait_for(lambda: len({p.pid for p in fork_parents(hub)} - before) == 1, timeout=90)
    site_packages = next(site["venv"].glob("lib/python*/site-packages"))
    (site_packages / "kioskhub_upgrade_marker.txt").write_text("a new package\n")
    try:
        start(site, forked["ada"], {"environment": "analysis"})
    finally:
        (site_packages / "kioskhub_upgrade_marker.txt").unlink()
    log = hub.log_text()
    assert "is replaced: its environment changed" in log
    assert log.count("Forked the server of ada") == 2


def start_kernel(session: UserSession, name: str = "python3") -> str:
    reply = session.server("/api/kernels", "POST", json={"name": name})
    reply.raise_for_status()
    return reply.json()["id"]


def kernel_pid(session: UserSession, kernel_id: str) -> int | None:
    """The pid of the kernel's process, or None while it does not answer."""
    try:
        reply = session._execute_in(kernel_id, "import os; print(os.getpid())", 10)
    except (TimeoutError, OSError):
        return None
    return int(reply["stdout"]) if reply["stdout"].strip() else None


def test_a_forked_kernel_is_interrupted_restarted_and_comes_back_when_it_dies(site, forked):
    ada, log = forked["ada"], server_log(site, "ada")
    kernel_id = start_kernel(ada)
    forks = f"Forked kernel {kernel_id}"
    assert forks in log.read_text()
    first = kernel_pid(ada, kernel_id)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(
            ada._execute_in, kernel_id, "print('go', flush=True)\nimport time; time.sleep(60)", 60
        )
        wait_for(
            lambda: ada.server(f"/api/kernels/{kernel_id}").json()["execution_state"] == "busy",
            timeout=20,
        )
        time.sleep(0.5)
        assert ada.server(f"/api/kernels/{kernel_id}/interrupt", "POST").status_code == 204
        assert running.result()["error"].startswith("KeyboardInterrupt"), running.result()
    assert ada.server(f"/api/kernels/{kernel_id}/restart", "POST").status_code == 200
    second = kernel_pid(ada, kernel_id)
    assert second != first and not psutil.pid_exists(first)
    assert log.read_text().count(forks) == 2
    # It exits by itself, then it is killed: each time the server sees it dead and restarts it.
    assert ada._execute_in(kernel_id, "import os; os._exit(3)", 30)["died"]
    third = wait_for(
        lambda: (kernel_pid(ada, kernel_id) or second) != second and kernel_pid(ada, kernel_id)
    )
    os.kill(third, signal.SIGKILL)
    fourth = wait_for(
        lambda: (kernel_pid(ada, kernel_id) or third) != third and kernel_pid(ada, kernel_id)
    )
    assert log.read_text().count(forks) == 4  # every start forked, none fresh
    assert ada.server(f"/api/kernels/{kernel_id}", "DELETE").status_code == 204
    wait_for(lambda: not psutil.pid_exists(fourth), timeout=20)  # gone, and reaped


def test_a_kernel_cannot_reach_another_users_kernel_zygote(site, forked):
    ada, bob = forked["ada"], forked["bob"]
    token_code = "import os; print(os.environ['JUPYTERHUB_API_TOKEN'], os.getppid())"
    ada_token, ada_zygote = ada.execute(token_code)["stdout"].split()
    bob_zygote = int(bob.execute(token_code)["stdout"].split()[1])
    ada_zygote = int(ada_zygote)
    for zygote, name in ((ada_zygote, "kh-ada"), (bob_zygote, "kh-bob")):
        assert Path(f"/proc/{zygote}/comm").read_text() == "kernel-zygote\n"
        assert psutil.Process(zygote).username() == name
    # ada's server token is in her own zygote (as in her server), never in bob's.
    assert memory_holds(ada_zygote, ada_token.encode())
    assert not memory_holds(bob_zygote, ada_token.encode())
    attack = (
        "import ctypes, os, signal\n"
        f"zygote = {ada_zygote}\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ptrace', libc.ptrace(16, zygote, 0, 0), os.strerror(ctypes.get_errno()))\n"
        "for how in ('mem', 'environ'):\n"
        "    try:\n"
        "        open(f'/proc/{zygote}/{how}', 'rb').read(1); print(how, 'open')\n"
        "    except OSError as error:\n"
        "        print(how, error.strerror)\n"
        "try:\n"
        "    os.kill(zygote, signal.SIGKILL); print('kill', 'sent')\n"
        "except OSError as error:\n"
        "    print('kill', error.strerror)\n"
    )
    reply = bob.execute(attack)
    assert reply["error"] is None, reply
    assert reply["stdout"].splitlines() == [
        "ptrace -1 Operation not permitted",
        "mem Permission denied",
        "environ Permission denied",
        "kill Operation not permitted",
    ]
    assert psutil.pid_exists(ada_zygote)
    kernel_id = start_kernel(ada)
    assert kernel_pid(ada, kernel_id)
    assert f"Forked kernel {kernel_id}" in server_log(site, "ada").read_text()
    ada.server(f"/api/kernels/{kernel_id}", "DELETE")


def test_a_kernelspec_that_changes_how_python_starts_gets_a_new_process(site, forked):
    """bob's own kernelspec puts a folder of his on PYTHONPATH: a forked kernel would not
    see it (its python started long before), so the kernel starts as a new process."""
    bob = forked["bob"]
    setup = (
        "import json, os, sys\n"
        "home = os.path.expanduser('~')\n"
        "os.makedirs(f'{home}/probe_modules', exist_ok=True)\n"
        "open(f'{home}/probe_modules/kioskhub_probe.py', 'w').write('VALUE = 42\\n')\n"
        "spec = f'{home}/.local/share/jupyter/kernels/probe'\n"
        "os.makedirs(spec, exist_ok=True)\n"
        "json.dump({'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f',\n"
        "  '{connection_file}'], 'display_name': 'probe', 'language': 'python',\n"
        "  'env': {'PYTHONPATH': f'{home}/probe_modules'}}, open(f'{spec}/kernel.json', 'w'))\n"
    )
    assert bob.execute(setup)["error"] is None
    kernel_id = start_kernel(bob, "probe")
    try:
        reply = bob._execute_in(kernel_id, "import kioskhub_probe; print(kioskhub_probe.VALUE)", 60)
        assert reply["stdout"] == "42\n", reply
    finally:
        bob.server(f"/api/kernels/{kernel_id}", "DELETE")
    assert (
        f"Kernel {kernel_id} starts as a new process: its environment changes how python "
        "starts (PYTHONPATH)" in server_log(site, "bob").read_text()
    )


def test_kernels_start_as_new_processes_once_the_zygote_is_gone(site, forked):
    bob = forked["bob"]
    kernel_id = start_kernel(bob)
    reply = bob._execute_in(kernel_id, "import os; print(os.getpid(), os.getppid())", 30)
    pid, zygote = (int(n) for n in reply["stdout"].split())
    assert Path(f"/proc/{zygote}/comm").read_text() == "kernel-zygote\n"
    os.kill(zygote, signal.SIGKILL)
    # The kernel stops when its parent is gone, as a fresh one does when its server is; the
    # server sees it dead and starts it again, now as a new process.
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie")
    again = wait_for(lambda: kernel_pid(bob, kernel_id), timeout=90)
    assert again != pid and psutil.Process(again).ppid() != zygote
    log = server_log(site, "bob").read_text()
    assert f"Kernel {kernel_id} starts as a new process: the zygote does not answer" in log
    bob.server(f"/api/kernels/{kernel_id}", "DELETE")


def test_a_forked_server_is_what_a_fresh_one_is(site, forked):
    """Last: the hub is restarted without fork servers for the fresh start."""
    ada, hub = forked["ada"], site["hub"]
    forked_view = user_view(ada, site)
    ada.stop_server()
    forked["bob"].stop_server()
    hub.stop()
    config = yaml.safe_load(site["config"].read_text())
    config["spawner"] = {"fork_server": False}
    site["config"].write_text(yaml.safe_dump(config))
    site["hub"] = start_hub(site["config"], site["folder"] / "hub-fresh.log")
    ada = user(site, "ada")
    start(site, ada, {"environment": "analysis"})
    assert "Forked the server" not in site["hub"].log_text()
    fresh_view = user_view(ada, site)
    assert "jupyterlab" in forked_view["loaded"], forked_view
    assert len(forked_view["mounts"]) == 3, forked_view["mounts"]  # /, mnt/data, ~/data
    for key in forked_view:
        assert forked_view[key] == fresh_view[key], key
