"""Cloud bursting's one decision, pure: which of a profile's backends a server starts on.

A profile lists its backends in order (``profiles[].backends``, e.g. local, then openstack).
Each backend's room is measured (``Room``): this machine's by what its running servers hold
against ``spawner.local_cpu``/``local_memory`` (the machine's cores and memory by default),
OpenStack's by what the project's compute quota leaves against the profile's flavor. The first
backend with room is chosen; the user is told where the server runs and why the ones before
were passed over. No room anywhere: the start is refused with every reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spawn_form import format_bytes

THIS_MACHINE = frozenset({"local", "podman"})
"""Backends whose servers share this machine's cores and memory."""
WHERE = {
    "local": "this machine",
    "podman": "this machine (a pod)",
    "kubernetes": "the Kubernetes cluster",
    "openstack": "a virtual machine in the OpenStack cloud",
}


class NoRoom(Exception):
    """No backend of the profile has room; the message says why for each."""


@dataclass(frozen=True)
class Room:
    backend: str
    fits: bool
    reason: str = ""
    """Why it does not fit (empty when it fits)."""


def machine_room(
    backend: str,
    capacity: tuple[float, int],
    held: tuple[float, int],
    wanted: tuple[float, int],
) -> Room:
    """Room on this machine: (cores, bytes) ``capacity``, ``held`` by running servers, and
    ``wanted`` by the new one."""
    (cpu, memory), (held_cpu, held_memory), (want_cpu, want_memory) = capacity, held, wanted
    if held_cpu + want_cpu > cpu + 1e-9:
        return Room(
            backend, False, f"this machine's servers hold {held_cpu:g} of {cpu:g} cores"
        )
    if held_memory + want_memory > memory:
        return Room(
            backend,
            False,
            f"this machine's servers hold {format_bytes(held_memory)} of "
            f"{format_bytes(memory)} of memory",
        )
    return Room(backend, True)


def cloud_room(free: dict[str, int], flavor: str, size: dict[str, int]) -> Room:
    """Room in the cloud's project: ``free`` as the compute quota leaves it (-1: unlimited)
    against the flavor's ``size`` (vcpus, ram in MiB)."""
    for key, wanted, what in (
        ("instances", 1, "servers"),
        ("cores", size["vcpus"], "cores"),
        ("ram", size["ram"], "MiB of memory"),
    ):
        left = free.get(key, -1)
        if 0 <= left < wanted:
            return Room(
                "openstack",
                False,
                f"the cloud's quota leaves {left} {what}, and a {flavor} VM needs {wanted}",
            )
    return Room("openstack", True)


def choose_backend(backends: tuple[str, ...], rooms: dict[str, Room]) -> tuple[str, str]:
    """The first of ``backends`` with room, and a line for the user saying where the server
    runs (and why earlier backends were passed over); NoRoom if none has room."""
    passed = []
    for backend in backends:
        room = rooms[backend]
        if room.fits:
            where = f"Your server runs on {WHERE.get(backend, backend)}"
            if passed:
                where += f" ({'; '.join(passed)})"
            return backend, where + "."
        passed.append(f"{backend}: {room.reason}")
    raise NoRoom("No room for your server anywhere right now: " + "; ".join(passed) + ".")
