"""cgroup layout detection and limit plans, from recorded /proc texts; no cgroup is touched."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kioskhub.spawner.cgroup_layout import usage_dirs
from kioskhub.spawner.cgroups import (
    CgroupError,
    CgroupLayout,
    CgroupWrite,
    ServerCgroup,
    detect_layout,
    plan_limits,
)

RECORDED = Path(__file__).parent / "recorded"
V2_ROOT = ("/sys/fs/cgroup", "/")

FIRECRACKER_HUB = "/process_api/e978861f8543770c26fa94d52855fbd2"
V1_PIDS = {"pids_mount": "/sys/fs/cgroup/pids", "pids_cgroup": "/"}
V1_CPUACCT = {"cpuacct_mount": "/sys/fs/cgroup/cpuacct", "cpuacct_cgroup": "/"}
V1_FIRECRACKER = CgroupLayout(
    1, "/sys/fs/cgroup/memory", FIRECRACKER_HUB, "/sys/fs/cgroup/cpu", "/", True, **V1_PIDS
)
V2_SYSTEMD = CgroupLayout(
    2,
    "/sys/fs/cgroup",
    "/system.slice/kioskhub.service",
    "/sys/fs/cgroup",
    "/system.slice/kioskhub.service",
    swap_limit=True,
    pids_mount="/sys/fs/cgroup",
    pids_cgroup="/system.slice/kioskhub.service",
)


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def test_detect_v1_on_this_kind_of_machine_from_mountinfo():
    """Hybrid: v1 controllers plus an empty cgroup2 tree at /sys/fs/cgroup/unified."""
    layout = detect_layout(
        recorded("proc-self-cgroup-v1-firecracker.txt"), recorded("mountinfo-v1-firecracker.txt")
    )
    assert layout == CgroupLayout(
        1, "/sys/fs/cgroup/memory", FIRECRACKER_HUB, "/sys/fs/cgroup/cpu", "/", **V1_PIDS,
        **V1_CPUACCT,
    )
    assert layout.memory_dir == "/sys/fs/cgroup/memory" + FIRECRACKER_HUB
    assert layout.cpuacct_dir == "/sys/fs/cgroup/cpuacct"
    assert layout.cpu_dir == "/sys/fs/cgroup/cpu"
    assert layout.pids_dir == "/sys/fs/cgroup/pids"


def test_detect_v1_from_proc_mounts():
    assert detect_layout(
        recorded("proc-self-cgroup-v1-firecracker.txt"), recorded("proc-mounts-v1-firecracker.txt")
    ) == CgroupLayout(
        1, "/sys/fs/cgroup/memory", FIRECRACKER_HUB, "/sys/fs/cgroup/cpu", "/", **V1_PIDS,
        **V1_CPUACCT,
    )


def test_detect_v1_container_whose_mounts_show_only_its_own_subtree():
    layout = detect_layout(
        recorded("proc-self-cgroup-v1-docker.txt"), recorded("mountinfo-v1-docker.txt")
    )
    assert layout == CgroupLayout(
        1, "/sys/fs/cgroup/memory", "/", "/sys/fs/cgroup/cpu,cpuacct", "/", **V1_PIDS,
        cpuacct_mount="/sys/fs/cgroup/cpu,cpuacct", cpuacct_cgroup="/",
    )
    assert (layout.memory_dir, layout.cpu_dir) == (
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/cpu,cpuacct",
    )


def test_detect_v2_systemd_service():
    layout = detect_layout(
        recorded("proc-self-cgroup-v2-systemd.txt"), recorded("mountinfo-v2-systemd.txt")
    )
    assert layout == CgroupLayout(
        2,
        "/sys/fs/cgroup",
        "/system.slice/kioskhub.service",
        "/sys/fs/cgroup",
        "/system.slice/kioskhub.service",
        pids_mount="/sys/fs/cgroup",
        pids_cgroup="/system.slice/kioskhub.service",
    )
    assert layout.memory_dir == layout.cpu_dir == layout.pids_dir


def test_detect_v2_container_with_cgroup_namespace():
    layout = detect_layout(
        recorded("proc-self-cgroup-v2-container.txt"), recorded("mountinfo-v2-container.txt")
    )
    assert layout == CgroupLayout(2, "/sys/fs/cgroup", "/", "/sys/fs/cgroup", "/", False, *V2_ROOT)
    assert layout.memory_dir == "/sys/fs/cgroup"


def test_detect_unescapes_mount_points():
    mountinfo = "40 31 0:37 / /mnt/cgroup\\040v2 rw,relatime - cgroup2 cgroup2 rw\n"
    assert detect_layout("0::/hub\n", mountinfo) == CgroupLayout(
        2, "/mnt/cgroup v2", "/hub", "/mnt/cgroup v2", "/hub", False, "/mnt/cgroup v2", "/hub"
    )


def test_detect_nothing_usable():
    assert detect_layout("", "") is None
    # the memory controller is in a v1 hierarchy that is not mounted here
    assert detect_layout("4:memory:/hub\n0::/\n", recorded("mountinfo-v2-systemd.txt")) is None
    # v2 membership but no cgroup2 mount
    assert detect_layout("0::/hub\n", "sysfs /sys sysfs rw,relatime 0 0\n") is None
    # a container whose process is outside the subtree its mount shows
    assert detect_layout("12:memory:/other\n", recorded("mountinfo-v1-docker.txt")) is None


def test_detect_v1_without_cpu_controller():
    assert detect_layout(
        "4:memory:/hub\n", "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
    ) == CgroupLayout(1, "/sys/fs/cgroup/memory", "/hub", None, None)


def test_plan_v1_with_a_separate_cpuacct_hierarchy_adds_a_group_that_counts_cpu_time():
    layout = replace(V1_FIRECRACKER, **V1_CPUACCT)
    plan = plan_limits("ada-default", 200 * 2**20, 0.2, layout)
    assert plan[:2] == [
        CgroupWrite("mkdir", "/sys/fs/cgroup/cpuacct/kioskhub"),
        CgroupWrite("group", "/sys/fs/cgroup/cpuacct/kioskhub/ada-default"),
    ]
    assert plan[2:] == plan_limits("ada-default", 200 * 2**20, 0.2, V1_FIRECRACKER)


def test_plan_v1_memory_and_cpu():
    memory = f"/sys/fs/cgroup/memory{FIRECRACKER_HUB}/kioskhub"
    assert plan_limits("ada-default", 200 * 2**20, 0.2, V1_FIRECRACKER) == [
        CgroupWrite("mkdir", memory),
        CgroupWrite("group", f"{memory}/ada-default"),
        CgroupWrite("write", f"{memory}/ada-default/memory.limit_in_bytes", "209715200"),
        CgroupWrite("write", f"{memory}/ada-default/memory.memsw.limit_in_bytes", "209715200"),
        CgroupWrite("mkdir", "/sys/fs/cgroup/cpu/kioskhub"),
        CgroupWrite("group", "/sys/fs/cgroup/cpu/kioskhub/ada-default"),
        CgroupWrite("write", "/sys/fs/cgroup/cpu/kioskhub/ada-default/cpu.cfs_period_us", "100000"),
        CgroupWrite("write", "/sys/fs/cgroup/cpu/kioskhub/ada-default/cpu.cfs_quota_us", "20000"),
    ]


def test_plan_v1_without_swap_accounting_and_with_cpu_cpuacct_hierarchy():
    layout = CgroupLayout(1, "/sys/fs/cgroup/memory", "/", "/sys/fs/cgroup/cpu,cpuacct", "/")
    assert plan_limits("grace", 4 * 2**30, 2, layout) == [
        CgroupWrite("mkdir", "/sys/fs/cgroup/memory/kioskhub"),
        CgroupWrite("group", "/sys/fs/cgroup/memory/kioskhub/grace"),
        CgroupWrite(
            "write", "/sys/fs/cgroup/memory/kioskhub/grace/memory.limit_in_bytes", "4294967296"
        ),
        CgroupWrite("mkdir", "/sys/fs/cgroup/cpu,cpuacct/kioskhub"),
        CgroupWrite("group", "/sys/fs/cgroup/cpu,cpuacct/kioskhub/grace"),
        CgroupWrite(
            "write", "/sys/fs/cgroup/cpu,cpuacct/kioskhub/grace/cpu.cfs_period_us", "100000"
        ),
        CgroupWrite(
            "write", "/sys/fs/cgroup/cpu,cpuacct/kioskhub/grace/cpu.cfs_quota_us", "200000"
        ),
    ]


def test_plan_v1_memory_and_cpu_in_one_hierarchy_share_a_group():
    layout = CgroupLayout(1, "/cg", "/hub", "/cg", "/hub")
    assert plan_limits("ada", 2**30, 1.5, layout) == [
        CgroupWrite("mkdir", "/cg/hub/kioskhub"),
        CgroupWrite("group", "/cg/hub/kioskhub/ada"),
        CgroupWrite("write", "/cg/hub/kioskhub/ada/memory.limit_in_bytes", "1073741824"),
        CgroupWrite("write", "/cg/hub/kioskhub/ada/cpu.cfs_period_us", "100000"),
        CgroupWrite("write", "/cg/hub/kioskhub/ada/cpu.cfs_quota_us", "150000"),
    ]


def test_plan_v2_memory_and_cpu():
    hub = "/sys/fs/cgroup/system.slice/kioskhub.service"
    assert plan_limits("ada-default", 200 * 2**20, 0.2, V2_SYSTEMD) == [
        CgroupWrite("write", f"{hub}/cgroup.subtree_control", "+memory +cpu"),
        CgroupWrite("mkdir", f"{hub}/kioskhub"),
        CgroupWrite("write", f"{hub}/kioskhub/cgroup.subtree_control", "+memory +cpu"),
        CgroupWrite("group", f"{hub}/kioskhub/ada-default"),
        CgroupWrite("write", f"{hub}/kioskhub/ada-default/memory.max", "209715200"),
        CgroupWrite("write", f"{hub}/kioskhub/ada-default/memory.swap.max", "0"),
        CgroupWrite("write", f"{hub}/kioskhub/ada-default/cpu.max", "20000 100000"),
    ]


def test_plan_v2_memory_only_in_a_container():
    layout = CgroupLayout(2, "/sys/fs/cgroup", "/", "/sys/fs/cgroup", "/", False, *V2_ROOT)
    assert plan_limits("ada", 8 * 2**30, None, layout) == [
        CgroupWrite("write", "/sys/fs/cgroup/cgroup.subtree_control", "+memory"),
        CgroupWrite("mkdir", "/sys/fs/cgroup/kioskhub"),
        CgroupWrite("write", "/sys/fs/cgroup/kioskhub/cgroup.subtree_control", "+memory"),
        CgroupWrite("group", "/sys/fs/cgroup/kioskhub/ada"),
        CgroupWrite("write", "/sys/fs/cgroup/kioskhub/ada/memory.max", "8589934592"),
    ]


def test_plan_v1_process_limit_in_the_pids_hierarchy():
    assert plan_limits("ada", None, 1, V1_FIRECRACKER, max_processes=512)[-3:] == [
        CgroupWrite("mkdir", "/sys/fs/cgroup/pids/kioskhub"),
        CgroupWrite("group", "/sys/fs/cgroup/pids/kioskhub/ada"),
        CgroupWrite("write", "/sys/fs/cgroup/pids/kioskhub/ada/pids.max", "512"),
    ]


def test_plan_v2_memory_cpu_and_processes():
    hub = "/sys/fs/cgroup/system.slice/kioskhub.service"
    plan = plan_limits("ada", 2**30, 1, V2_SYSTEMD, max_processes=1024)
    assert plan[0] == CgroupWrite("write", f"{hub}/cgroup.subtree_control", "+memory +cpu +pids")
    assert plan[2].value == "+memory +cpu +pids"
    assert plan[-1] == CgroupWrite("write", f"{hub}/kioskhub/ada/pids.max", "1024")


def test_plan_process_limit_without_pids_controller():
    layout = CgroupLayout(1, "/sys/fs/cgroup/memory", "/hub", "/sys/fs/cgroup/cpu", "/")
    with pytest.raises(CgroupError, match="no cgroup pids controller is mounted"):
        plan_limits("ada", None, 1, layout, max_processes=100)
    with pytest.raises(ValueError, match="process limit must be at least 1, got 0"):
        plan_limits("ada", None, 1, V1_FIRECRACKER, max_processes=0)


def test_plan_cpu_only_and_no_limits():
    assert plan_limits("ada", None, 4, V2_SYSTEMD)[-1] == CgroupWrite(
        "write",
        "/sys/fs/cgroup/system.slice/kioskhub.service/kioskhub/ada/cpu.max",
        "400000 100000",
    )
    assert plan_limits("ada", None, None, V1_FIRECRACKER) == []
    assert plan_limits("ada", None, None, V2_SYSTEMD) == []


@pytest.mark.parametrize(
    "name, memory, cpu, message",
    [
        ("../escape", None, 1, "cgroup name '../escape' must be 1-255 characters"),
        ("", None, 1, "cgroup name '' must be"),
        ("ada/x", None, 1, "cgroup name 'ada/x' must be"),
        ("ada", 512, None, "memory limit must be at least 1 MiB (1048576 bytes), got 512"),
        ("ada", None, 0.001, "CPU limit must be at least 0.01 cores, got 0.001"),
        ("ada", None, 0, "CPU limit must be at least 0.01 cores, got 0"),
    ],
)
def test_plan_rejects_bad_names_and_limits(name, memory, cpu, message):
    with pytest.raises(ValueError) as error:
        plan_limits(name, memory, cpu, V1_FIRECRACKER)
    assert str(error.value).startswith(message)


def test_plan_cpu_limit_without_cpu_controller():
    layout = CgroupLayout(1, "/sys/fs/cgroup/memory", "/hub", None, None)
    with pytest.raises(CgroupError, match="no cgroup cpu controller is mounted"):
        plan_limits("ada", None, 1, layout)
    assert plan_limits("ada", 2**30, None, layout)[-1] == CgroupWrite(
        "write", "/sys/fs/cgroup/memory/hub/kioskhub/ada/memory.limit_in_bytes", "1073741824"
    )


def test_server_cgroup_procs_files_and_enter_fn(tmp_path):
    """enter_fn writes "0" (the writing process) to each cgroup.procs; plain files here."""
    memory, cpu = tmp_path / "memory", tmp_path / "cpu"
    for folder in (memory, cpu):
        folder.mkdir()
        (folder / "cgroup.procs").write_text("")
    group = ServerCgroup(dirs=(str(memory), str(cpu)), memory_dir=str(memory))
    assert group.procs_files == (f"{memory}/cgroup.procs", f"{cpu}/cgroup.procs")
    group.enter_fn()()
    assert [(folder / "cgroup.procs").read_text() for folder in (memory, cpu)] == ["0\n", "0\n"]


def test_server_cgroup_pids(tmp_path):
    (tmp_path / "cgroup.procs").write_text("4242\n4243\n")
    assert ServerCgroup(dirs=(str(tmp_path), str(tmp_path / "gone"))).pids() == {4242, 4243}


@pytest.mark.parametrize(
    "files, kills",
    [
        (
            {
                "memory.events": "low 0\nhigh 0\nmax 17\noom 2\noom_kill 2\noom_group_kill 0\n",
                "memory.failcnt": "17\n",
            },
            2,
        ),
        ({"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"}, 3),
        ({"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n", "memory.failcnt": "5\n"}, 5),
    ],
    ids=["v2", "v1", "v1-before-4.13"],
)
def test_oom_kills(tmp_path, files, kills):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert ServerCgroup(dirs=(str(tmp_path),), memory_dir=str(tmp_path)).oom_kills() == kills
    assert ServerCgroup(dirs=(str(tmp_path),)).oom_kills() == 0


POD = "/libpod_parent/4f0c2a9d"


def test_a_pods_usage_folders_in_every_hierarchy_that_counts_cpu_time_or_memory():
    v1 = usage_dirs(
        POD,
        recorded("proc-self-cgroup-v1-firecracker.txt"),
        recorded("mountinfo-v1-firecracker.txt"),
    )
    assert v1 == ("/sys/fs/cgroup/cpuacct" + POD, "/sys/fs/cgroup/memory" + POD)
    v2 = usage_dirs(
        POD, recorded("proc-self-cgroup-v2-systemd.txt"), recorded("mountinfo-v2-systemd.txt")
    )
    assert v2 == ("/sys/fs/cgroup" + POD,)


@pytest.mark.parametrize("path", ["/libpod_parent/../../etc", "libpod_parent/x", "/a/./b", "/a\nb"])
def test_a_cgroup_path_that_is_not_plain_names_is_refused(path):
    with pytest.raises(ValueError, match="not a plain cgroup path"):
        usage_dirs(path, "0::/\n", "")
