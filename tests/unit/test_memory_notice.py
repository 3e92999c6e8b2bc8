"""The memory notice's pure parts: cgroup file parsers, the OOM decision, the text."""

from __future__ import annotations

from pathlib import Path

import pytest

from kioskhub.extensions.memory_notice import (
    MemoryCgroup,
    MemoryEvents,
    RunningCell,
    ServerLimits,
    format_bytes,
    killed_for_memory,
    locate_memory_cgroup,
    parse_flat_keyed,
    parse_v1_oom_control,
)

V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
V1_OOM_CONTROL_BEFORE_4_13 = "oom_kill_disable 0\nunder_oom 0\n"
V2_MEMORY_EVENTS = "low 0\nhigh 0\nmax 17\noom 2\noom_kill 2\noom_group_kill 0\n"

PROC_CGROUP_V1 = """\
12:pids:/user.slice/user-1000.slice/session-3.scope
11:memory:/kioskhub/alice
10:cpu,cpuacct:/kioskhub/alice
1:name=systemd:/user.slice/user-1000.slice/session-3.scope
"""
PROC_CGROUP_HYBRID = """\
9:name=systemd:/
4:memory:/process_api/50bbb71bc7f2706df3d172754cf908d9
1:cpu:/
0::/
"""
PROC_CGROUP_V2 = "0::/system.slice/kioskhub.service/alice\n"
PROC_CGROUP_NO_MEMORY = "3:cpuset:/\n2:cpu,cpuacct:/\n"


def test_flat_keyed_files_are_parsed_into_counters():
    assert parse_flat_keyed(V2_MEMORY_EVENTS) == {
        "low": 0,
        "high": 0,
        "max": 17,
        "oom": 2,
        "oom_kill": 2,
        "oom_group_kill": 0,
    }
    assert parse_flat_keyed("") == {}
    assert parse_flat_keyed("garbage\nkey notanumber\n") == {}


def test_v1_oom_control_gives_the_oom_kill_count():
    assert parse_v1_oom_control(V1_OOM_CONTROL) == 3


def test_v1_oom_control_of_old_kernels_has_no_count():
    assert parse_v1_oom_control(V1_OOM_CONTROL_BEFORE_4_13) is None


def test_v2_memory_events_gives_the_oom_kill_count():
    assert parse_flat_keyed(V2_MEMORY_EVENTS)["oom_kill"] == 2


def test_v1_memory_line_gives_the_v1_memory_folder():
    assert locate_memory_cgroup(PROC_CGROUP_V1) == MemoryCgroup(
        1, Path("/sys/fs/cgroup/memory/kioskhub/alice")
    )


def test_hybrid_machine_uses_the_v1_memory_hierarchy():
    assert locate_memory_cgroup(PROC_CGROUP_HYBRID) == MemoryCgroup(
        1, Path("/sys/fs/cgroup/memory/process_api/50bbb71bc7f2706df3d172754cf908d9")
    )


def test_v2_line_gives_the_unified_folder():
    assert locate_memory_cgroup(PROC_CGROUP_V2, Path("/cg")) == MemoryCgroup(
        2, Path("/cg/system.slice/kioskhub.service/alice")
    )


def test_no_memory_controller_gives_none():
    assert locate_memory_cgroup(PROC_CGROUP_NO_MEMORY) is None
    assert locate_memory_cgroup("") is None


def test_v1_events_are_read_from_the_folder(tmp_path):
    (tmp_path / "memory.oom_control").write_text(V1_OOM_CONTROL)
    (tmp_path / "memory.failcnt").write_text("42\n")
    assert MemoryCgroup(1, tmp_path).events() == MemoryEvents(oom_kills=3, limit_hits=42)


def test_v2_events_are_read_from_the_folder(tmp_path):
    (tmp_path / "memory.events").write_text(V2_MEMORY_EVENTS)
    assert MemoryCgroup(2, tmp_path).events() == MemoryEvents(oom_kills=2, limit_hits=17)


def test_unreadable_folder_gives_unknown_events(tmp_path):
    assert MemoryCgroup(1, tmp_path / "gone").events() == MemoryEvents(None, None)
    assert MemoryCgroup(2, tmp_path / "gone").events() == MemoryEvents(None, None)


@pytest.mark.parametrize(
    ("before", "after", "exit_status", "expected"),
    [
        (MemoryEvents(0, 5), MemoryEvents(1, 9), -9, True),
        (MemoryEvents(0, 5), MemoryEvents(1, 9), 137, True),
        (MemoryEvents(0, 5), MemoryEvents(1, 9), None, True),
        (MemoryEvents(1, 9), MemoryEvents(1, 9), -9, False),
        # another process in the cgroup was killed; this kernel exited by itself
        (MemoryEvents(0, 5), MemoryEvents(1, 9), 1, False),
        (MemoryEvents(0, 5), MemoryEvents(1, 9), -15, False),
        # kernels before 4.13: no OOM-kill count, limit hits and SIGKILL decide
        (MemoryEvents(None, 5), MemoryEvents(None, 9), -9, True),
        (MemoryEvents(None, 5), MemoryEvents(None, 5), -9, False),
        (MemoryEvents(None, 5), MemoryEvents(None, 9), None, False),
        (MemoryEvents(), MemoryEvents(), -9, False),
    ],
)
def test_oom_kill_is_recognised(before, after, exit_status, expected):
    assert killed_for_memory(before, after, exit_status) is expected


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (512, "512 bytes"),
        (2048, "2 KiB"),
        (512 * 1024**2, "512 MiB"),
        (400 * 1024**2, "400 MiB"),
        (1536 * 1024**2, "1.5 GiB"),
        (2 * 1024**3, "2 GiB"),
        (1_000_000_000, "953.7 MiB"),
        (3 * 1024**5, "3 PiB"),
        (2048 * 1024**5, "2048 PiB"),
    ],
)
def test_sizes_are_written_in_binary_units(size, text):
    assert format_bytes(size) == text


def test_limits_come_from_the_spawners_environment():
    assert ServerLimits.from_environ(
        {"MEM_LIMIT": "536870912", "KIOSKHUB_PROFILE": "small"}
    ) == ServerLimits(536870912, "small")
    assert ServerLimits.from_environ({}) == ServerLimits(None, None)
    assert ServerLimits.from_environ({"MEM_LIMIT": "0", "KIOSKHUB_PROFILE": " "}) == ServerLimits()
    assert ServerLimits.from_environ({"MEM_LIMIT": "512M"}) == ServerLimits()


def test_notice_names_limit_and_profile():
    assert ServerLimits(536870912, "small").notice() == (
        "The kernel was stopped: your server reached its memory limit of 512 MiB "
        "(profile 'small'). The kernel has restarted, so earlier variables are gone. "
        "Use less memory, or start your server with a larger profile."
    )


def test_notice_without_mem_limit_or_profile():
    assert ServerLimits().notice() == (
        "The kernel was stopped: your server reached its memory limit. "
        "The kernel has restarted, so earlier variables are gone. "
        "Use less memory, or start your server with a larger profile."
    )
    assert ServerLimits(None, "gpu-large").notice() == (
        "The kernel was stopped: your server reached its memory limit (profile 'gpu-large'). "
        "The kernel has restarted, so earlier variables are gone. "
        "Use less memory, or start your server with a larger profile."
    )


def test_notice_when_the_kernel_could_not_be_restarted():
    assert ServerLimits(2 * 1024**3, None).notice(restarted=False) == (
        "The kernel was stopped: your server reached its memory limit of 2 GiB. "
        "The kernel could not be restarted; start it again from the Kernel menu. "
        "Use less memory, or start your server with a larger profile."
    )


def execute(msg_id: str) -> dict:
    return {"msg_id": msg_id, "msg_type": "execute_request", "session": "s"}


def test_running_cell_is_the_one_the_kernel_is_busy_with():
    running = RunningCell()
    for msg_id in ("a", "b", "c"):  # "Run All" queues three cells
        running.sent(execute(msg_id))
    running.status("busy", execute("a"))
    running.status("idle", execute("a"))
    running.status("busy", execute("b"))
    assert running.current() == execute("b")


def test_running_cell_without_busy_is_the_oldest_request_not_yet_idle():
    running = RunningCell()
    for msg_id in ("a", "b", "c"):
        running.sent(execute(msg_id))
    assert running.current() == execute("a")
    running.status("busy", execute("a"))
    running.status("idle", execute("a"))
    # "b" is killed before the kernel could publish its busy status
    assert running.current() == execute("b")


def test_reply_finishes_a_request_whose_idle_was_lost():
    running = RunningCell()
    for msg_id in ("a", "b"):
        running.sent(execute(msg_id))
    running.status("busy", execute("a"))
    running.finished("a")  # execute_reply
    assert running.current() == execute("b")


def test_busy_request_finishes_the_requests_sent_before_it():
    running = RunningCell()
    for msg_id in ("a", "b", "c"):
        running.sent(execute(msg_id))
    running.status("busy", execute("b"))  # "a" went idle while nobody listened
    running.status("idle", execute("b"))
    assert running.current() == execute("c")


def test_only_execute_requests_are_cells():
    running = RunningCell()
    running.sent({"msg_id": "k", "msg_type": "kernel_info_request"})
    running.status("busy", {"msg_id": "k", "msg_type": "kernel_info_request"})
    assert running.current() is None
    running.sent(execute("a"))
    assert running.current() == execute("a")
    running.status("idle", execute("a"))
    assert running.current() is None


def test_running_cell_is_forgotten_when_the_kernel_dies_or_starts():
    running = RunningCell()
    running.sent(execute("a"))
    running.status("busy", execute("a"))
    running.forget()
    assert running.current() is None
    running.sent(execute("b"))
    running.status("busy", execute("b"))
    running.status("starting", {})
    assert running.current() is None


def test_pending_requests_are_bounded():
    running = RunningCell()
    for number in range(RunningCell.MAX_PENDING + 5):
        running.sent(execute(str(number)))
    assert running.current() == execute("5")
