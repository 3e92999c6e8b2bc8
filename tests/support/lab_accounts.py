"""A lab's directory for the identity tests: a group and accounts in this machine's name
service (``groupadd``/``useradd``), with unique names and free ids, removed afterwards; and a
central data folder that only the group may read."""

from __future__ import annotations

import grp
import json
import os
import pwd
import random
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass(frozen=True)
class LabAccount:
    name: str
    uid: int
    gid: int


@dataclass
class LabDirectory:
    """The lab group and the accounts made for one test module."""

    group: str
    gid: int
    accounts: dict[str, LabAccount] = field(default_factory=dict)


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(f"/usr/sbin/{name}")
    if path is None:
        pytest.fail(f"the identity tests need {name} (Debian package passwd)")
    return path


def free_ids(count: int, low: int, high: int) -> list[int]:
    """``count`` ids in [low, high) that no account or group uses (as uid and as gid)."""
    taken = {e.pw_uid for e in pwd.getpwall()} | {g.gr_gid for g in grp.getgrall()}
    free = [i for i in random.sample(range(low, high), min(high - low, 4 * count + 50))]
    chosen = [i for i in free if i not in taken][:count]
    if len(chosen) < count:
        pytest.fail(f"no {count} free ids between {low} and {high}")
    return chosen


def make_directory(tag: str, members: tuple[str, ...], others: tuple[str, ...]) -> LabDirectory:
    """Group ``lab<tag>`` and one account per name (``<name><tag>``) with its own group
    (uid = gid ≥ 40000); ``members`` are in the lab group, ``others`` not."""
    ids = free_ids(1 + len(members) + len(others), 40000, 60000)
    directory = LabDirectory(group=f"lab{tag}", gid=ids.pop())
    subprocess.run([_tool("groupadd"), "-g", str(directory.gid), directory.group], check=True)
    for short in (*members, *others):
        in_lab = ("-G", directory.group) if short in members else ()
        add_account(directory, short, tag, ids.pop(), in_lab)
    return directory


@contextmanager
def lab_directory(members: tuple[str, ...], others: tuple[str, ...]) -> Iterator[LabDirectory]:
    """``make_directory`` with a fresh tag, removed afterwards."""
    directory = make_directory(unique_tag(), members, others)
    try:
        yield directory
    finally:
        remove_directory(directory)


def add_system_account(directory: LabDirectory, short: str, tag: str) -> LabAccount:
    """An account with a uid (and group) below 1000, as the machine's services have."""
    return add_account(directory, short, tag, free_ids(1, 700, 990)[0])


def add_account(
    directory: LabDirectory, short: str, tag: str, uid: int, options: tuple[str, ...] = ()
) -> LabAccount:
    """Account ``<short><tag>`` with uid ``uid`` and a group of its own with that gid."""
    name = f"{short}{tag}"
    subprocess.run([_tool("groupadd"), "-g", str(uid), name], check=True)
    useradd = [_tool("useradd"), "-u", str(uid), "-g", str(uid), *options, "-M", "-N"]
    subprocess.run([*useradd, "-s", "/usr/sbin/nologin", name], check=True)
    directory.accounts[short] = LabAccount(name, uid, uid)
    return directory.accounts[short]


def remove_directory(directory: LabDirectory) -> None:
    for account in directory.accounts.values():
        subprocess.run([_tool("userdel"), account.name], check=False)
        subprocess.run([_tool("groupdel"), account.name], check=False, capture_output=True)
    subprocess.run([_tool("groupdel"), directory.group], check=False)


def group_data_folder(folder: Path, gid: int) -> Path:
    """``folder``, mode 0750 root:<gid>, holding ``results.txt`` (0640): only the group reads."""
    folder.mkdir(parents=True)
    (folder / "results.txt").write_text("beam current 42 mA\n")
    os.chown(folder / "results.txt", 0, gid)
    os.chmod(folder / "results.txt", 0o640)
    os.chown(folder, 0, gid)
    os.chmod(folder, 0o750)
    return folder


PROBE = """
import json, os
def read(path):
    try:
        return open(path).read()
    except OSError as error:
        return type(error).__name__
home = os.path.expanduser("~")
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
    "user": os.environ.get("USER"), "home": home, "home_writable": os.access(home, os.W_OK),
    "data": read(os.path.join(%r, "results.txt")),
}))
"""


def identity_probe(user, data_folder: str) -> dict:
    """What a kernel of ``user``'s server sees: its ids, home, and ``results.txt`` in
    ``data_folder`` (its text, or the name of the error that reading it raised)."""
    reply = user.execute(PROBE % data_folder)
    assert reply["error"] is None, reply
    return json.loads(reply["stdout"])


def unique_tag() -> str:
    return f"{random.randrange(16**5):05x}"


CLUSTER_PROBE = """
import json, os
from dask_gateway import Gateway
def seen():
    import json, os
    try:
        data = open(os.path.join(%(data)r, "results.txt")).read()
    except OSError as error:
        data = type(error).__name__
    return {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
            "user": os.environ.get("USER"), "home": os.environ.get("HOME"), "data": data,
            "in_container": os.path.exists("/run/.containerenv")}
cluster = Gateway().new_cluster()
try:
    cluster.scale(1)
    client = cluster.get_client()
    client.wait_for_workers(1, timeout=150)
    print("PROBE", json.dumps({
        "kernel": seen(),
        "workers": list(client.run(seen).values()),
        "scheduler": client.run_on_scheduler(seen),
    }))
    client.close()
finally:
    cluster.shutdown()
"""


def cluster_probe(user, data_folder: str, hub) -> dict:
    """What the kernel of ``user``'s server, and the scheduler and one worker of a Dask
    cluster it starts, see: ids, ``USER``, ``HOME``, whether in a container, and
    ``results.txt`` in ``data_folder`` (its text or the error reading it). ``hub``'s log
    explains a failure."""
    reply = user.execute(CLUSTER_PROBE % {"data": data_folder}, timeout=300)
    assert reply["error"] is None, (reply, hub.log_text()[-3000:])
    return json.loads(reply["stdout"].split("PROBE ", 1)[1].splitlines()[0])
