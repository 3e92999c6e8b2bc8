"""BurstingSpawner's state: which backend holds the server, and that backend's own state, so a
restarted hub polls and stops the right one."""

from __future__ import annotations

from traitlets.config import Config

from kioskhub.hub.schema.site import Site
from kioskhub.spawner.bursting import BurstingSpawner
from kioskhub.spawner.local_process import KioskSpawner
from kioskhub.spawner.openstack import OpenStackSpawner
from tests.support.kube_cluster import Group, HubUser

CLASSES = {
    "local": "kioskhub.spawner.local_process.KioskSpawner",
    "openstack": "kioskhub.spawner.openstack.OpenStackSpawner",
}


def bursting(tmp_path) -> BurstingSpawner:
    site = Site.model_validate({
        "hub": {"state_dir": str(tmp_path / "state")},
        "home": {"root": str(tmp_path / "homes")},
        "profiles": [{"name": "small", "backends": ["local", "openstack"]}],
        "openstack": {"cloud": "lab", "hub_address": "10.0.2.2", "image": "debian",
                      "flavors": [{"profile": "small", "flavor": "m1.small"}]},
    })
    config = Config()
    config.BurstingSpawner.site = site
    config.BurstingSpawner.spawner_classes = CLASSES
    config.KioskSpawner.site = site
    config.OpenStackSpawner.site = site
    return BurstingSpawner(user=HubUser("ada", [Group("physics")]), config=config)


VM_STATE = {
    "kioskhub": {
        "version": 1,
        "gpus": "",
        "summary": "Python 3 · Small",
        "launch": {"server_id": "s-1", "volume_id": "v-1", "address": "10.1.0.7",
                   "flavor": "m1.small"},
    }
}


def test_the_state_names_the_backend_and_keeps_its_state(tmp_path):
    spawner = bursting(tmp_path)
    spawner.load_state({"bursting": {"version": 1, "backend": "openstack", "state": VM_STATE}})

    held = spawner.running
    assert isinstance(held, OpenStackSpawner)
    assert (held.server_id, held.volume_id, held.address) == ("s-1", "v-1", "10.1.0.7")
    assert spawner.choice_summary == "Python 3 · Small · on openstack"
    again = bursting(tmp_path)
    again.load_state(spawner.get_state())
    assert again.running.server_id == "s-1"
    assert isinstance(again.child("local"), KioskSpawner)


def test_an_unknown_version_or_backend_is_not_adopted(tmp_path):
    for saved in ({"version": 2, "backend": "openstack", "state": VM_STATE},
                  {"version": 1, "backend": "ec2", "state": VM_STATE}):
        spawner = bursting(tmp_path)
        spawner.load_state({"bursting": saved})
        assert spawner.running is None and spawner.get_state() == {}
