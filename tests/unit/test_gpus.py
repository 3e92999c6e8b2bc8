"""GPU discovery against recorded nvidia-smi output, and on a real GPU where one exists."""

from __future__ import annotations

import asyncio
import shutil
import stat
from pathlib import Path

import pytest

from kioskhub.spawner.gpus import (
    NVIDIA_SMI_COMPUTE_APPS_QUERY,
    NVIDIA_SMI_QUERY,
    Gpu,
    GpuDiscoveryError,
    NoFreeGpu,
    choose_gpus,
    cuda_visible_devices,
    discover_gpus,
    parse_compute_apps,
    parse_gpus,
)

RECORDED = Path(__file__).parent / "recorded"

A100_0 = Gpu(0, "GPU-5d3c1f9e-2b7a-4c1e-9f3d-8a6b2c4e1f70", "NVIDIA A100-SXM4-80GB", 81920, 4, 0)
A100_1 = Gpu(1, "GPU-a81f02c4-6e3b-11f7-b2d9-04c6e8a1d355", "NVIDIA A100-SXM4-80GB", 81920, 1210, 0)
A100_2 = Gpu(
    2, "GPU-3e9b7d21-c4f0-8a56-1d2e-9f7a3b6c0e84", "NVIDIA A100-SXM4-80GB", 81920, 40537, 97
)
A100_3 = Gpu(3, "GPU-f04a6c88-91d2-3b7e-5c1a-e2d8b0f94a16", "NVIDIA A100-SXM4-80GB", 81920, 4, 0)
H100 = Gpu(0, "GPU-c0b5e2a7-4f19-d36e-8a0b-7e51f2c9d4a3", "NVIDIA H100 80GB HBM3", 81559, 1, 0)
T4_0 = Gpu(0, "GPU-1b7f9c3e-5a2d-6e08-c4b1-93d7a0e6f258", "Tesla T4", 15360, 0, 0)
T4_1 = Gpu(1, "GPU-6a2e8d4f-b013-97c5-2e6a-d8f1c47b3090", "Tesla T4", 15360, 3021, 41)
A100_PCIE_2 = Gpu(
    2, "GPU-9d4c1a7b-e8f2-0365-b9d7-1c2f5e8a6b43", "NVIDIA A100-PCIE-40GB", 40960, 0, 0
)
A100_PCIE_3 = Gpu(
    3, "GPU-e7f30b5c-2d9a-48c1-a6e3-5b0d9f2c71e8", "NVIDIA A100-PCIE-40GB", 40960, 22013, 88
)


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def machine(name: str) -> tuple[list[Gpu], set[str]]:
    """The GPUs and busy UUIDs of one recorded machine."""
    return (
        parse_gpus(recorded(f"nvidia-smi-{name}.csv")),
        parse_compute_apps(recorded(f"nvidia-smi-{name}-compute-apps.csv")),
    )


def test_queries_are_argv_lists_for_csv_without_header_or_units():
    assert NVIDIA_SMI_QUERY == [
        "nvidia-smi",
        "--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu",
        "--format=csv,noheader,nounits",
    ]
    assert NVIDIA_SMI_COMPUTE_APPS_QUERY == [
        "nvidia-smi",
        "--query-compute-apps=gpu_uuid,pid,used_memory",
        "--format=csv,noheader,nounits",
    ]


def test_parse_recorded_machines():
    assert machine("4xA100") == (
        [A100_0, A100_1, A100_2, A100_3],
        {"GPU-3e9b7d21-c4f0-8a56-1d2e-9f7a3b6c0e84"},
    )
    assert machine("h100") == ([H100], set())
    assert machine("mixed") == (
        [T4_0, T4_1, A100_PCIE_2, A100_PCIE_3],
        {"GPU-6a2e8d4f-b013-97c5-2e6a-d8f1c47b3090", "GPU-e7f30b5c-2d9a-48c1-a6e3-5b0d9f2c71e8"},
    )


def test_parse_not_available_fields_as_none():
    text = (
        "0, GPU-c0b5e2a7-4f19-d36e-8a0b-7e51f2c9d4a3, NVIDIA H100 80GB HBM3, 81559, [N/A], [N/A]\n"
    )
    assert parse_gpus(text) == [
        Gpu(
            0,
            "GPU-c0b5e2a7-4f19-d36e-8a0b-7e51f2c9d4a3",
            "NVIDIA H100 80GB HBM3",
            81559,
            None,
            None,
        )
    ]


def test_parse_compute_apps_without_processes():
    assert parse_compute_apps("") == set()
    assert parse_compute_apps("No running processes found\n") == set()
    assert parse_compute_apps("GPU-5d3c1f9e-2b7a-4c1e-9f3d-8a6b2c4e1f70, 4242, [N/A]\n") == {
        "GPU-5d3c1f9e-2b7a-4c1e-9f3d-8a6b2c4e1f70"
    }


def test_parse_rejects_output_of_another_query():
    with pytest.raises(GpuDiscoveryError) as error:
        parse_gpus("0, GPU-5d3c1f9e-2b7a-4c1e-9f3d-8a6b2c4e1f70, NVIDIA A100-SXM4-80GB\n")
    assert str(error.value) == (
        "nvidia-smi --query-gpu line 1 has 3 fields, expected 6 (index, uuid, name, "
        "memory.total, memory.used, utilization.gpu): "
        "['0', 'GPU-5d3c1f9e-2b7a-4c1e-9f3d-8a6b2c4e1f70', 'NVIDIA A100-SXM4-80GB']"
    )
    with pytest.raises(GpuDiscoveryError, match="memory.total is '81920 MiB'"):
        parse_gpus("0, GPU-5d3c1f9e, NVIDIA A100-SXM4-80GB, 81920 MiB, 4 MiB, 0 %\n")


def test_choose_prefers_least_used_memory_then_lowest_index():
    gpus, busy = machine("4xA100")
    assert choose_gpus(gpus, busy, set(), 1, None) == [A100_0]
    assert choose_gpus(gpus, busy, set(), 3, None) == [A100_0, A100_3, A100_1]
    assert choose_gpus(gpus, busy, set(), 0, None) == []


def test_choose_skips_busy_gpus():
    gpus, busy = machine("4xA100")
    with pytest.raises(NoFreeGpu) as error:
        choose_gpus(gpus, busy, set(), 4, None)
    assert str(error.value) == (
        "asked for 4 GPUs, but this machine has 4 GPUs and 3 of them are free "
        "(the others run other processes or belong to other KioskHub servers); "
        "choose a profile with fewer GPUs or try again when one is released"
    )
    assert (error.value.asked, error.value.existing, error.value.free) == (4, 4, 3)


def test_choose_skips_gpus_assigned_to_other_servers():
    gpus, busy = machine("4xA100")
    assigned = {A100_0.uuid, A100_3.uuid}
    assert choose_gpus(gpus, busy, assigned, 1, "a100") == [A100_1]
    with pytest.raises(NoFreeGpu) as error:
        choose_gpus(gpus, busy, assigned, 2, "A100")
    assert str(error.value).startswith(
        "asked for 2 'A100' GPUs, but this machine has 4 'A100' GPUs and 1 of them is free "
    )


def test_choose_filters_by_type_case_insensitively_on_whole_words():
    gpus, busy = machine("mixed")
    assert choose_gpus(gpus, busy, set(), 1, "t4") == [T4_0]
    assert choose_gpus(gpus, busy, set(), 1, "A100") == [A100_PCIE_2]
    assert choose_gpus(gpus, busy, set(), 1, "a100 40gb") == [A100_PCIE_2]
    h100, none_busy = machine("h100")
    assert choose_gpus(h100, none_busy, set(), 1, "h100") == [H100]
    assert choose_gpus(h100, none_busy, set(), 1, "H100 80GB") == [H100]
    with pytest.raises(NoFreeGpu) as error:
        choose_gpus(gpus, busy, set(), 1, "a10")
    assert str(error.value).startswith(
        "asked for 1 'a10' GPU, but this machine has 0 'a10' GPUs and 0 of them are free "
    )


def test_not_enough_gpus_of_a_type():
    gpus, busy = machine("mixed")
    with pytest.raises(NoFreeGpu) as error:
        choose_gpus(gpus, busy, set(), 2, "t4")
    assert str(error.value) == (
        "asked for 2 't4' GPUs, but this machine has 2 't4' GPUs and 1 of them is free "
        "(the others run other processes or belong to other KioskHub servers); "
        "choose a profile with fewer GPUs or try again when one is released"
    )
    assert (error.value.asked, error.value.existing, error.value.free, error.value.gpu_type) == (
        2,
        2,
        1,
        "t4",
    )


def test_negative_count_is_a_programming_error():
    with pytest.raises(ValueError, match="GPU count must be 0 or more, got -1"):
        choose_gpus([H100], set(), set(), -1, None)


def test_cuda_visible_devices_lists_uuids():
    assert cuda_visible_devices([A100_3, A100_0]) == (
        "GPU-f04a6c88-91d2-3b7e-5c1a-e2d8b0f94a16,GPU-5d3c1f9e-2b7a-4c1e-9f3d-8a6b2c4e1f70"
    )
    assert cuda_visible_devices([]) == ""


class RecordedNvidiaSmi:
    """A fake ``run`` that answers each query with a recorded output."""

    def __init__(self, name: str):
        self.name = name
        self.calls: list[list[str]] = []

    async def __call__(self, argv):
        self.calls.append(list(argv))
        suffix = "" if list(argv) == NVIDIA_SMI_QUERY else "-compute-apps"
        return 0, recorded(f"nvidia-smi-{self.name}{suffix}.csv"), ""


class MissingNvidiaSmi:
    """A fake ``run`` on a machine without nvidia-smi."""

    async def __call__(self, argv):
        raise FileNotFoundError(2, "No such file or directory", argv[0])


class NoDriverNvidiaSmi:
    """A fake ``run`` where nvidia-smi is installed but the driver is not loaded."""

    async def __call__(self, argv):
        return 9, recorded("nvidia-smi-no-driver.txt"), ""


def test_discover_with_recorded_output():
    run = RecordedNvidiaSmi("4xA100")
    assert asyncio.run(discover_gpus(run)) == (
        [A100_0, A100_1, A100_2, A100_3],
        {"GPU-3e9b7d21-c4f0-8a56-1d2e-9f7a3b6c0e84"},
    )
    assert run.calls == [NVIDIA_SMI_QUERY, NVIDIA_SMI_COMPUTE_APPS_QUERY]


def test_discover_without_nvidia_smi_finds_no_gpus():
    assert asyncio.run(discover_gpus(MissingNvidiaSmi())) == ([], set())


def test_discover_without_driver_says_so():
    with pytest.raises(GpuDiscoveryError) as error:
        asyncio.run(discover_gpus(NoDriverNvidiaSmi()))
    assert str(error.value) == (
        "nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu "
        "--format=csv,noheader,nounits exited with status 9: NVIDIA-SMI has failed because "
        "it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA "
        "driver is installed and running.; is the NVIDIA driver loaded (`nvidia-smi` alone "
        "shows the same error)?"
    )


def fake_nvidia_smi(folder: Path, script: str) -> None:
    path = folder / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_discover_runs_nvidia_smi_from_path(tmp_path, monkeypatch):
    fake_nvidia_smi(
        tmp_path,
        f"""case "$1" in
  --query-gpu=*) exec /bin/cat '{RECORDED}/nvidia-smi-mixed.csv' ;;
  --query-compute-apps=*) exec /bin/cat '{RECORDED}/nvidia-smi-mixed-compute-apps.csv' ;;
esac
echo "unexpected arguments: $*" >&2
exit 2
""",
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    assert asyncio.run(discover_gpus()) == (
        [T4_0, T4_1, A100_PCIE_2, A100_PCIE_3],
        {"GPU-6a2e8d4f-b013-97c5-2e6a-d8f1c47b3090", "GPU-e7f30b5c-2d9a-48c1-a6e3-5b0d9f2c71e8"},
    )


def test_discover_reports_stderr_of_failing_nvidia_smi(tmp_path, monkeypatch):
    fake_nvidia_smi(
        tmp_path, 'echo "Failed to initialize NVML: Driver/library version mismatch" >&2\nexit 18\n'
    )
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GpuDiscoveryError) as error:
        asyncio.run(discover_gpus())
    assert "exited with status 18: Failed to initialize NVML: Driver/library version mismatch;" in (
        str(error.value)
    )


def test_discover_on_path_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert asyncio.run(discover_gpus()) == ([], set())


@pytest.mark.gpu
@pytest.mark.skipif(
    shutil.which("nvidia-smi") is None,
    reason="needs an NVIDIA GPU (nvidia-smi), which CI does not have",
)
def test_discover_real_gpus():
    gpus, busy = asyncio.run(discover_gpus())
    assert len(gpus) >= 1
    assert all(gpu.uuid.startswith("GPU-") for gpu in gpus)
    assert busy <= {gpu.uuid for gpu in gpus}
