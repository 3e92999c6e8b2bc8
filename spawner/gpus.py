"""GPU discovery and assignment for the local backend, through ``nvidia-smi``.

The parsers and ``choose_gpus`` are pure functions of nvidia-smi's CSV output, so they
are tested against recorded output; ``discover_gpus`` is the only function that runs
anything. A machine without ``nvidia-smi`` simply has no GPUs.
"""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

NVIDIA_SMI_QUERY = [
    "nvidia-smi",
    "--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu",
    "--format=csv,noheader,nounits",
]
"""argv listing every GPU with its identity, memory (MiB) and utilisation (%)."""

NVIDIA_SMI_COMPUTE_APPS_QUERY = [
    "nvidia-smi",
    "--query-compute-apps=gpu_uuid,pid,used_memory",
    "--format=csv,noheader,nounits",
]
"""argv listing every process that holds a CUDA context, with the UUID of its GPU."""

NVIDIA_SMI_TIMEOUT_S = 30.0
"""nvidia-smi hangs when the driver is wedged; give up after this long."""

_NOT_AVAILABLE = {"[N/A]", "[Not Supported]", "N/A", ""}
_NO_PROCESSES = "No running processes found"

RunCommand = Callable[[Sequence[str]], Awaitable[tuple[int, str, str]]]
"""``await run(argv) -> (exit status, stdout, stderr)``; raises FileNotFoundError when
the program is not installed."""


class GpuDiscoveryError(RuntimeError):
    """nvidia-smi is installed but failed (no driver loaded, driver hung, odd output)."""


class NoFreeGpu(RuntimeError):
    """Fewer free GPUs of the requested type than a server asked for."""

    def __init__(self, asked: int, existing: int, free: int, gpu_type: str | None):
        self.asked = asked
        self.existing = existing
        self.free = free
        self.gpu_type = gpu_type
        kind = f"{gpu_type!r} GPU" if gpu_type else "GPU"
        super().__init__(
            f"asked for {asked} {kind}{_plural(asked)}, but this machine has {existing} "
            f"{kind}{_plural(existing)} and {free} of them {'is' if free == 1 else 'are'} free "
            "(the others run other processes or belong to other KioskHub servers); "
            "choose a profile with fewer GPUs or try again when one is released"
        )


@dataclass(frozen=True)
class Gpu:
    """One GPU as nvidia-smi reports it. Memory is in MiB; None where nvidia-smi says N/A."""

    index: int
    uuid: str
    name: str
    memory_total_mib: int | None
    memory_used_mib: int | None
    utilization_percent: int | None


def parse_gpus(csv_text: str) -> list[Gpu]:
    """Parse the output of ``NVIDIA_SMI_QUERY`` into GPUs, in nvidia-smi's order."""
    gpus = []
    for line_no, row in _rows(csv_text):
        if len(row) != 6:
            raise GpuDiscoveryError(
                f"nvidia-smi --query-gpu line {line_no} has {len(row)} fields, expected 6 "
                f"(index, uuid, name, memory.total, memory.used, utilization.gpu): {row!r}"
            )
        index, uuid, name, total, used, util = row
        gpus.append(
            Gpu(
                index=_int(index, "index", line_no),
                uuid=uuid,
                name=name,
                memory_total_mib=_optional_int(total, "memory.total", line_no),
                memory_used_mib=_optional_int(used, "memory.used", line_no),
                utilization_percent=_optional_int(util, "utilization.gpu", line_no),
            )
        )
    return gpus


def parse_compute_apps(csv_text: str) -> set[str]:
    """Parse the output of ``NVIDIA_SMI_COMPUTE_APPS_QUERY`` into the UUIDs of busy GPUs."""
    busy = set()
    for line_no, row in _rows(csv_text):
        if len(row) == 1 and row[0] == _NO_PROCESSES:
            continue
        if len(row) != 3 or not row[0].startswith("GPU-"):
            raise GpuDiscoveryError(
                f"nvidia-smi --query-compute-apps line {line_no} is not "
                f"'gpu_uuid, pid, used_memory': {row!r}"
            )
        busy.add(row[0])
    return busy


def choose_gpus(
    gpus: Sequence[Gpu],
    busy_uuids: set[str],
    already_assigned: set[str],
    count: int,
    gpu_type: str | None,
) -> list[Gpu]:
    """Pick ``count`` free GPUs, least used memory first (then lowest index).

    Free means: no process holds a CUDA context on it (``busy_uuids``) and no other
    KioskHub server has it (``already_assigned``, UUIDs). ``gpu_type`` keeps only GPUs
    whose name contains all of its words, case-insensitively: "h100" matches
    "NVIDIA H100 80GB HBM3" and "a100 80gb" matches "NVIDIA A100-SXM4-80GB", but "a10"
    does not match an A100. Raises ``NoFreeGpu`` when there are not enough.
    """
    if count < 0:
        raise ValueError(f"GPU count must be 0 or more, got {count}")
    if count == 0:
        return []
    of_type = [gpu for gpu in gpus if _is_type(gpu.name, gpu_type)]
    free = [gpu for gpu in of_type if gpu.uuid not in busy_uuids | already_assigned]
    if len(free) < count:
        raise NoFreeGpu(asked=count, existing=len(of_type), free=len(free), gpu_type=gpu_type)
    free.sort(key=lambda gpu: (_unknown_last(gpu.memory_used_mib), gpu.index))
    return free[:count]


def cuda_visible_devices(gpus: Iterable[Gpu]) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` value that shows a server exactly these GPUs.

    UUIDs rather than indices: nvidia-smi numbers GPUs in PCI bus order while CUDA by
    default numbers them fastest first (``CUDA_DEVICE_ORDER=FASTEST_FIRST``), and both
    orders change when a GPU is added, removed or fails; a UUID names the same physical
    GPU whatever the order, so a server never lands on a GPU that was given to another.
    """
    return ",".join(gpu.uuid for gpu in gpus)


async def run_command(argv: Sequence[str]) -> tuple[int, str, str]:
    """Run ``argv`` (no shell) and return (exit status, stdout, stderr).

    Raises FileNotFoundError when the program is not installed and GpuDiscoveryError
    when it runs longer than ``NVIDIA_SMI_TIMEOUT_S``.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), NVIDIA_SMI_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise GpuDiscoveryError(
            f"{' '.join(argv)} did not answer within {NVIDIA_SMI_TIMEOUT_S:g} s; "
            "the NVIDIA driver may be hung (check `dmesg` for Xid errors)"
        ) from None
    return process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")


async def discover_gpus(run: RunCommand = run_command) -> tuple[list[Gpu], set[str]]:
    """Ask nvidia-smi for this machine's GPUs and the UUIDs of those that are busy.

    Returns ``([], set())`` when nvidia-smi is not installed; raises GpuDiscoveryError,
    with nvidia-smi's own message, when it is installed but fails.
    """
    try:
        gpus_csv = await _query(run, NVIDIA_SMI_QUERY)
    except FileNotFoundError:
        return [], set()
    gpus = parse_gpus(gpus_csv)
    busy = parse_compute_apps(await _query(run, NVIDIA_SMI_COMPUTE_APPS_QUERY)) if gpus else set()
    return gpus, busy


async def _query(run: RunCommand, argv: Sequence[str]) -> str:
    status, stdout, stderr = await run(argv)
    if status != 0:
        message = (stderr.strip() or stdout.strip() or "(no output)").replace("\n", " | ")
        raise GpuDiscoveryError(
            f"{' '.join(argv)} exited with status {status}: {message}; "
            "is the NVIDIA driver loaded (`nvidia-smi` alone shows the same error)?"
        )
    return stdout


def _rows(csv_text: str) -> Iterable[tuple[int, list[str]]]:
    reader = csv.reader(csv_text.splitlines(), skipinitialspace=True)
    for line_no, row in enumerate(reader, start=1):
        row = [field.strip() for field in row]
        if row and any(row):
            yield line_no, row


def _int(text: str, field: str, line_no: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise GpuDiscoveryError(
            f"nvidia-smi line {line_no}: {field} is {text!r}, expected a whole number"
        ) from None


def _optional_int(text: str, field: str, line_no: int) -> int | None:
    return None if text in _NOT_AVAILABLE else _int(text, field, line_no)


def _unknown_last(value: int | None) -> float:
    return float("inf") if value is None else value


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _is_type(name: str, gpu_type: str | None) -> bool:
    if not gpu_type:
        return True
    return set(_words(gpu_type)) <= set(_words(name))


def _plural(n: int) -> str:
    return "" if n == 1 else "s"
