"""Real cgroups: a server over its memory limit is OOM-killed, its CPU is throttled.

Needs root and a writable memory and cpu controller (as on this machine and in CI);
without them these tests fail and say why, since the local backend's limits would
silently not exist.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from kioskhub.spawner.cgroups import (
    CgroupError,
    CgroupLayout,
    CgroupWrite,
    ServerCgroup,
    apply_limits,
    cgroups_available,
    current_layout,
    plan_limits,
)

pytestmark = pytest.mark.integration

MiB = 2**20

ALLOCATE_AND_TOUCH = """
import sys
size = int(sys.argv[1]) * 2**20
block = bytearray(size)
for offset in range(0, size, 4096):
    block[offset] = 1
print(open("/proc/self/cgroup").read(), flush=True)
"""

BUSY_LOOP = "while True: pass"


def hub_layout() -> CgroupLayout:
    """This process's cgroup layout; fails the test (a FAILED, not a skip) without one."""
    reason = cgroups_available()
    if reason is not None:
        pytest.fail(f"cgroup limits cannot be tested here: {reason}")
    return current_layout()


@pytest.fixture
def groups():
    """Collects the groups a test makes and removes whatever the test left.

    The shared ``kioskhub/`` parents stay, as in production: another hub or test on
    this machine may be creating a group in them at this moment.
    """
    made: list[ServerCgroup] = []
    yield made
    for group in made:
        group.remove()


def server_name() -> str:
    return f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def start_in(group: ServerCgroup, code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        preexec_fn=group.enter_fn(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_over_memory_limit_is_oom_killed(groups):
    layout = hub_layout()
    group = apply_limits(plan_limits(server_name(), 200 * MiB, None, layout))
    groups.append(group)
    before = group.oom_kills()

    process = start_in(group, ALLOCATE_AND_TOUCH, "400")
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == -signal.SIGKILL, stderr.decode()
    assert stdout == b""
    assert group.oom_kills() == before + 1


def test_under_memory_limit_survives_inside_its_group(groups):
    layout = hub_layout()
    name = server_name()
    group = apply_limits(plan_limits(name, 200 * MiB, 1, layout))
    groups.append(group)

    process = start_in(group, ALLOCATE_AND_TOUCH, "50")
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr.decode()
    memberships = stdout.decode().splitlines()
    memory_line = next(line for line in memberships if ":memory:" in line or line.startswith("0::"))
    assert memory_line.endswith(f"/kioskhub/{name}")
    assert group.oom_kills() == 0


def test_cpu_quota_throttles_a_busy_loop_and_remove_kills_and_cleans_up(groups):
    layout = hub_layout()
    group = apply_limits(plan_limits(server_name(), None, 0.2, layout))
    groups.append(group)

    process = start_in(group, BUSY_LOOP)
    started = time.monotonic()
    time.sleep(2)
    times = psutil.Process(process.pid).cpu_times()
    elapsed = time.monotonic() - started
    used = times.user + times.system

    assert group.pids() == {process.pid}
    # 0.2 cores may use 20 ms of every 100 ms period, 0.4 s in 2 s (unlimited: 1-2 s);
    # allow 0.1 s for the periods that the window cuts and for the child's exec.
    assert 0.1 < used <= 0.2 * elapsed + 0.1, (used, elapsed)

    assert group.remove() == 1
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert [d for d in group.dirs if os.path.exists(d)] == []


def test_a_group_that_still_runs_a_server_is_not_replaced(groups):
    layout = hub_layout()
    name = server_name()
    group = apply_limits(plan_limits(name, 200 * MiB, 0.5, layout))
    groups.append(group)
    process = start_in(group, BUSY_LOOP)
    try:
        with pytest.raises(CgroupError, match="is a server of the same name still running"):
            apply_limits(plan_limits(name, 200 * MiB, 0.5, layout))
    finally:
        assert group.remove() == 1
        process.wait(timeout=10)
    again = apply_limits(plan_limits(name, 100 * MiB, 0.5, layout))
    groups.append(again)
    assert again == group
    assert again.oom_kills() == 0


def test_a_value_the_kernel_refuses_names_the_file_and_undoes_the_groups(groups):
    layout = hub_layout()
    plan = plan_limits(server_name(), 200 * MiB, 0.5, layout)
    quota = plan[-1]
    assert quota.path.endswith(("cpu.cfs_quota_us", "cpu.max"))
    refused = "500" if quota.path.endswith("cpu.cfs_quota_us") else "500 100000"
    plan[-1] = CgroupWrite("write", quota.path, refused)

    with pytest.raises(CgroupError) as error:
        apply_limits(plan)

    assert str(error.value) == f"could not write {refused!r} to {quota.path}: Invalid argument"
    assert [step.path for step in plan if step.kind == "group" and os.path.exists(step.path)] == []


FORK_UNTIL_REFUSED = """
import errno, os, time
children = []
while len(children) < 200:
    try:
        pid = os.fork()
    except OSError as error:
        print(len(children), errno.errorcode[error.errno], flush=True)
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
else:
    print(len(children), "no limit", flush=True)
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""


def test_process_limit_stops_a_fork_bomb_with_eagain(groups):
    layout = hub_layout()
    if layout.pids_dir is None:
        pytest.fail("no usable cgroup pids controller: the process limit cannot be tested here")
    group = apply_limits(plan_limits(server_name(), None, None, layout, max_processes=20))
    groups.append(group)

    process = start_in(group, FORK_UNTIL_REFUSED)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr.decode()
    forked, outcome = stdout.decode().split()
    assert (int(forked), outcome) == (19, "EAGAIN")
