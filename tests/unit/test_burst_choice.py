"""Cloud bursting's decision (pure): the first of a profile's backends with room."""

from __future__ import annotations

import pytest

from kioskhub.spawner.burst_choice import (
    NoRoom,
    Room,
    choose_backend,
    cloud_room,
    machine_room,
)

GB = 10**9


def test_the_first_backend_with_room_is_chosen_and_the_user_is_told_where():
    rooms = {"local": Room("local", True), "openstack": Room("openstack", True)}
    assert choose_backend(("local", "openstack"), rooms) == (
        "local",
        "Your server runs on this machine.",
    )


def test_a_full_machine_sends_the_server_to_the_cloud_saying_why():
    rooms = {
        "local": machine_room("local", (8, 32 * GB), (7.5, 4 * GB), (1, 2 * GB)),
        "openstack": cloud_room(
            {"instances": 3, "cores": 10, "ram": 8192}, "m1.small", {"vcpus": 1, "ram": 2048}
        ),
    }
    assert choose_backend(("local", "openstack"), rooms) == (
        "openstack",
        "Your server runs on a virtual machine in the OpenStack cloud (local: this machine's "
        "servers hold 7.5 of 8 cores).",
    )


def test_memory_counts_as_much_as_cores():
    room = machine_room("podman", (8, 16 * GB), (1, 15 * GB), (1, 2 * GB))
    assert room == Room("podman", False, "this machine's servers hold 15 GB of 16 GB of memory")
    assert machine_room("local", (8, 16 * GB), (6, 14 * GB), (2, 2 * GB)).fits


@pytest.mark.parametrize(
    ("free", "reason"),
    [
        ({"instances": 0, "cores": 10, "ram": 10**6}, "leaves 0 servers, and a g1 VM needs 1"),
        ({"instances": 5, "cores": 3, "ram": 10**6}, "leaves 3 cores, and a g1 VM needs 4"),
        ({"instances": 5, "cores": 9, "ram": 100}, "leaves 100 MiB of memory, and a g1 VM needs"),
    ],
)
def test_the_clouds_quota_decides_its_room(free, reason):
    room = cloud_room(free, "g1", {"vcpus": 4, "ram": 8192})
    assert not room.fits and reason in room.reason


def test_an_unlimited_quota_has_room():
    assert cloud_room({"instances": -1, "cores": -1, "ram": -1}, "g1", {"vcpus": 64, "ram": 1}).fits


def test_no_room_anywhere_is_refused_with_every_reason():
    rooms = {
        "local": Room("local", False, "this machine's servers hold 8 of 8 cores"),
        "openstack": Room("openstack", False, "the cloud's quota leaves 0 servers"),
    }
    with pytest.raises(NoRoom) as refused:
        choose_backend(("local", "openstack"), rooms)
    assert str(refused.value) == (
        "No room for your server anywhere right now: local: this machine's servers hold 8 of "
        "8 cores; openstack: the cloud's quota leaves 0 servers."
    )
