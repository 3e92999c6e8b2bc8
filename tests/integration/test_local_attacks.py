"""The local backend as root against hostile users: each test stages an attack and fails it.

A real hub as root, real kh- accounts, real cgroups and mount namespaces. A user's
moves are made from their notebook where they can be, otherwise from the test as
root with the user's ownership (what they could have left between two servers).
"""

from __future__ import annotations

import os
import pwd
import shutil
import time
from pathlib import Path

import pytest

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner.home_setup import EXAMPLES_LEDGER
from kioskhub.spawner.server_log import LOG_MAX_BYTES
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

MAX_PROCESSES = 96


@pytest.fixture(scope="module")
def site():
    if os.geteuid() != 0:
        pytest.fail("these tests attack the hub's root-owned steps; run them as root")
    folder = open_folder("attacks")
    write_sample_data(folder / "data")
    closed = folder / "restricted"
    closed.mkdir(mode=0o700)
    (closed / "beam").mkdir(mode=0o755)
    (closed / "beam" / "secret-run.csv").write_text("run,energy\n1,6.0\n")
    (folder / "open-chemistry").mkdir(mode=0o755)
    victim = folder / "root-only"
    victim.mkdir(mode=0o755)
    (victim / "precious.conf").write_text("root's")
    config = write_site_config(
        folder,
        profiles=[
            {"name": "small", "cpu": 1, "memory": "1Gi", "max_processes": MAX_PROCESSES},
        ],
        data_mounts=[
            {"name": "data", "source": "data", "mount_path": str(folder / "mnt" / "data")},
            {
                "name": "beam",
                "source": "restricted/beam",
                "mount_path": str(folder / "mnt" / "beam"),
                "groups": ["physics"],
            },
            {
                "name": "chemistry",
                "source": "open-chemistry",
                "mount_path": str(folder / "mnt" / "chemistry"),
                "groups": ["chemistry"],
            },
        ],
        groups={"physics": ["ada"], "chemistry": ["carol"]},
    )
    hub = start_hub(config, folder / "hub.log")
    yield {"hub": hub, "folder": folder, "victim": victim}
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def ada(site) -> UserSession:
    user = signed_in(site["hub"].url, "ada", SHARED_PASSWORD)
    assert user.spawn()[-1].get("ready")
    return user


@pytest.fixture(scope="module")
def bob(site) -> UserSession:
    user = signed_in(site["hub"].url, "bob", SHARED_PASSWORD)
    assert user.spawn()[-1].get("ready")
    return user


UNDO_LINKS = """
import os, shutil
home = os.path.expanduser('~')
for name in ('examples', '.kioskhub'):
    path = os.path.join(home, name)
    if os.path.islink(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)
"""


def run(user: UserSession, code: str, timeout: float = 60) -> str:
    reply = user.execute(code, timeout=timeout)
    assert reply["error"] is None, reply
    return reply["stdout"]


def restart(user: UserSession) -> list[dict]:
    user.stop_server()
    return user.spawn()


def owners(top: str) -> dict[str, int]:
    found = {top: os.lstat(top).st_uid}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            found[path] = os.lstat(path).st_uid
    return found


@pytest.mark.parametrize("target", ["root-only", "/etc"])
def test_examples_symlinked_to_a_root_folder_change_no_owner(site, ada, target):
    victim = str(site["folder"] / target)
    before = owners(victim)
    run(ada, UNDO_LINKS + f"os.symlink({victim!r}, f'{{home}}/examples')\n")

    events = restart(ada)

    assert events[-1].get("ready"), events
    assert owners(victim) == before
    assert "examples not copied: Permission denied" in site["hub"].log_text()


def test_symlinked_home_components_are_not_followed_by_root(site, ada):
    home = site["folder"] / "homes" / "ada"
    account = pwd.getpwnam("kh-ada")
    run(ada, UNDO_LINKS + f"os.symlink({str(site['victim'])!r}, f'{{home}}/.kioskhub')\n")
    ada.stop_server()
    # between two servers, ~/data (a mount point while one runs) becomes a symlink to /etc
    (home / "data").rmdir()
    (home / "data").symlink_to("/etc")
    os.lchown(home / "data", account.pw_uid, account.pw_gid)
    before = owners("/etc")

    assert ada.spawn()[-1].get("ready")

    assert owners("/etc") == before
    assert sorted(p.name for p in site["victim"].iterdir()) == ["precious.conf"]
    seen = run(
        ada,
        "import os\n"
        "print(os.path.islink(os.path.expanduser('~/data')))\n"
        "print(sorted(os.listdir(os.path.expanduser('~/data'))))\n"
        "print(os.path.exists('/etc/passwd'))\n",
    ).splitlines()
    assert seen[0] == "False"
    assert "beamline-sample.csv" in seen[1]
    assert seen[2] == "True"


def test_a_fifo_or_huge_ledger_neither_hangs_nor_is_read(site, ada):
    run(
        ada,
        UNDO_LINKS + f"ledger = os.path.join(home, {EXAMPLES_LEDGER!r})\n"
        "os.makedirs(os.path.dirname(ledger))\n"
        "os.mkfifo(ledger)\n",
    )
    assert restart(ada)[-1].get("ready")
    assert "examples-copied.json is not a regular file" in site["hub"].log_text()

    run(
        ada,
        "import os\n"
        f"ledger = os.path.expanduser('~/{EXAMPLES_LEDGER}')\n"
        "os.remove(ledger)\n"
        "with open(ledger, 'wb') as f: f.truncate(64 * 2**30)\n",
    )
    assert restart(ada)[-1].get("ready")
    assert "examples-copied.json is larger than 1048576 bytes" in site["hub"].log_text()


FORK_BOMB = """
import errno, os, time
children, outcome = [], "no limit"
for _ in range(600):
    try:
        pid = os.fork()
    except OSError as error:
        outcome = errno.errorcode[error.errno]
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
print(len(children), outcome)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


def test_a_fork_bomb_stops_at_the_process_limit_and_the_hub_stays_up(site, bob):
    forked, outcome = run(bob, FORK_BOMB, timeout=120).split()

    assert outcome == "EAGAIN"
    assert int(forked) < MAX_PROCESSES
    assert site["hub"].process.poll() is None
    assert bob.api("/users/bob").status_code == 200
    assert run(bob, "print('still here')").strip() == "still here"


def test_other_accounts_cannot_read_a_restricted_mounts_host_path(site, ada, bob):
    source = site["folder"] / "restricted" / "beam" / "secret-run.csv"
    mounted = site["folder"] / "mnt" / "beam" / "secret-run.csv"
    assert run(ada, f"print(open({str(mounted)!r}).readline().strip())").strip() == "run,energy"
    denied = run(
        bob,
        f"for path in ({str(source)!r}, {str(mounted)!r}):\n"
        "    try:\n"
        "        open(path).read(); print('read')\n"
        "    except OSError as error:\n"
        "        print(error.strerror)\n",
    ).splitlines()
    assert denied == ["Permission denied", "No such file or directory"]


def test_a_restricted_mount_with_an_open_source_refuses_to_start(site):
    carol = signed_in(site["hub"].url, "carol", SHARED_PASSWORD)
    refused = carol.api("/users/carol/server", "POST", json={})
    assert refused.status_code == 500, refused.text
    message = refused.json()["message"]
    assert message.startswith("Your server exited during start (exit status 70).")
    source = site["folder"] / "open-chemistry"
    assert f"the group-restricted data source {source} is reachable by every account" in message
    assert "move it into a folder only root may enter" in message


def test_the_server_log_is_capped_and_rotated(site, bob):
    """The kernel writes 20 MiB into the server's stdout, the pipe to the log writer."""
    run(
        bob,
        "import os\n"
        "log_pipe = os.readlink(f'/proc/{os.getppid()}/fd/1')\n"
        "def points_to(fd):\n"
        "    try:\n"
        "        return os.readlink(f'/proc/self/fd/{fd}')\n"
        "    except OSError:\n"
        "        return None\n"
        "fds = [int(n) for n in os.listdir('/proc/self/fd')]\n"
        "out = next(fd for fd in fds if points_to(fd) == log_pipe)\n"
        "for _ in range(40):\n"
        "    os.write(out, b'x' * 2**19 + b'\\n')\n",
        timeout=120,
    )
    logs = Path(site["folder"] / "state" / "logs")
    log, rotated = logs / "bob.log", logs / "bob.log.1"
    deadline = time.monotonic() + 30
    while not rotated.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rotated.exists()
    assert log.stat().st_size <= LOG_MAX_BYTES
    assert rotated.stat().st_size <= LOG_MAX_BYTES
    assert (logs.stat().st_uid, oct(logs.stat().st_mode & 0o777)) == (0, "0o700")
