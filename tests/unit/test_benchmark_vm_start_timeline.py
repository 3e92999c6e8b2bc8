"""How the VM start benchmark reads a start's timeline (benchmarks/vm_start.py): literal
console lines, hub log lines and progress messages."""

from __future__ import annotations

import datetime

from benchmarks.vm_start import console_marks, hub_callback_at, milestones, step_label

HUB_LOG = """\
[I 2026-12-01 13:50:20.472 JupyterHub log:192] 200 GET /hub/api (@127.0.0.1) 1.03ms
[I 2026-12-01 13:50:20.738 JupyterHub log:192] 200 POST /hub/api/users/vm-0001/activity (vm-0001@127.0.0.1) 18.42ms
[I 2026-12-01 13:50:21.100 JupyterHub log:192] 200 POST /hub/api/users/vm-000/activity (vm-000@127.0.0.1) 18.42ms
[I 2026-12-01 13:51:00.000 JupyterHub log:192] 200 POST /hub/api/users/vm-000/activity (vm-000@127.0.0.1) 9.00ms
"""  # noqa: E501


def epoch(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def test_the_server_calls_back_with_its_own_users_first_activity_after_the_request():
    assert hub_callback_at(HUB_LOG, "vm-000", epoch("2026-12-01 13:50:20.000")) == (
        epoch("2026-12-01 13:50:21.100") - epoch("2026-12-01 13:50:20.000"))
    # an earlier start's report does not count; another user's never does
    assert hub_callback_at(HUB_LOG, "vm-000", epoch("2026-12-01 13:50:30.000")) == (
        epoch("2026-12-01 13:51:00.000") - epoch("2026-12-01 13:50:30.000"))
    assert hub_callback_at(HUB_LOG, "vm-00", epoch("2026-12-01 13:50:00.000")) is None


def test_console_marks_keep_the_time_each_line_first_appeared():
    seen: dict[str, float] = {}
    console_marks("kioskhub-vm-init: network up (10.0.2.15, gateway 10.0.2.2)\n", seen, 19.0)
    console_marks("kioskhub-vm-init: network up (10.0.2.15, gateway 10.0.2.2)\n"
                  "kioskhub-vm-init: cloud-init init --local: done in 12.1 s\n", seen, 33.5)
    assert seen == {"init: network up": 19.0, "cloud-init init --local done": 33.5}


def test_steps_lose_names_and_order_with_the_other_points():
    assert step_label("Requesting VM kh-ab12cd34-vm-000 (m1.bench)") == (
        "Nova: server requested (BUILD)")
    assert step_label("Starting pod kh-7edb4e37-vm-001: 1 CPU, 2 GB") == (
        "Starting pod <pod>: 1 CPU, 2 GB")
    run = {"steps": [("Server requested", 0.1), ("progress: ready", 9.0)],
           "console": {"init: network up": 4.0}, "server_calls_hub_s": 8.5,
           "ready_s": 9.1, "kernel_s": 10.0}
    assert [label for label, _ in milestones(run)] == [
        "Server requested", "console: init: network up", "server calls the hub's API",
        "progress: ready", "/api/status answers 200", "kernel prints 42"]
