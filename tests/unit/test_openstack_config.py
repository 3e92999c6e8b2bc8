"""The openstack: section, profiles' backends, the hub settings they make, and the OpenStack
backend's pure choices (flavor and image, addresses, the user's messages)."""

from __future__ import annotations

import pytest

from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.schema.config_file import ConfigError, load_site
from kioskhub.hub.state_dir import Passwords
from kioskhub.spawner.launch_spec import ChoiceError, EnvironmentSpec, LaunchSpec
from kioskhub.spawner.openstack_plan import (
    cloud_refusal,
    console_failure,
    fault_message,
    server_address,
    vm_names,
    vm_plan,
    vm_reachable_env,
)
from tests.unit.test_pod_settings import write

CLOUD = {
    "cloud": "lab",
    "hub_address": "10.0.0.5",
    "image": "debian-12-kioskhub",
    "images": [{"environment": "legacy", "image": "centos-7"}],
    "flavors": [{"profile": "small", "flavor": "m1.small"}, {"profile": "gpu", "flavor": "g1"}],
}
PROFILES = [
    {"name": "small", "default": True, "backends": ["local", "openstack"]},
    {"name": "gpu", "cpu": 8, "memory": "64G", "gpu": {"count": 1}},
]
ENVIRONMENTS = [
    {"name": "default", "default": True},
    {"name": "legacy", "kind": "image", "image": "registry.lab.org/legacy:1"},
]


def site(tmp_path, **config):
    config = {"openstack": CLOUD, "profiles": PROFILES, "environments": ENVIRONMENTS, **config}
    return load_site(write(tmp_path, **config))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"openstack": {**CLOUD, "cloud": None}}, "openstack: name the cloud (cloud: an entry"),
        ({"openstack": {**CLOUD, "hub_address": ""}}, "openstack.hub_address: give the address"),
        ({"openstack": {**CLOUD, "hub_address": "hub.lab.org"}}, "openstack.hub_cidr: hub_address"),
        ({"openstack": {**CLOUD, "flavors": []}}, "openstack.flavors: give a flavor to small"),
        ({"openstack": {**CLOUD, "flavors": [{"profile": "huge", "flavor": "x"}]}},
         "openstack.flavors: huge is not a resource profile"),
        ({"openstack": {**CLOUD, "image": ""}}, "openstack.image: give the generic image"),
        ({"openstack": {**CLOUD, "application_credential": {
            "auth_url": "https://k/v3", "id": "x", "secret_file": "s"}}},
         "give either cloud or application_credential, not both"),
        ({"profiles": [{"name": "small", "backends": ["local", "local"]}]},
         "a backend is listed twice"),
        ({"profiles": [{"name": "small", "backends": ["local", "ec2"]}]}, "backends"),
    ],
)
def test_openstack_config_mistakes_name_the_key_and_the_fix(tmp_path, config, message):
    with pytest.raises(ConfigError) as error:
        site(tmp_path, **config)
    assert message in str(error.value)


def test_a_site_without_openstack_needs_no_cloud(tmp_path):
    assert load_site(write(tmp_path)).openstack.cloud is None


def test_bursting_hands_starts_to_each_backends_class(tmp_path):
    settings = jupyterhub_settings(site(tmp_path), Passwords("u" * 12, "a" * 32), "chp")
    assert settings["JupyterHub"]["spawner_class"] == "kioskhub.spawner.bursting.BurstingSpawner"
    bursting = settings["BurstingSpawner"]
    assert bursting["spawner_classes"] == {
        "local": "kioskhub.spawner.local_process.KioskSpawner",
        "openstack": "kioskhub.spawner.openstack.OpenStackSpawner",
    }
    assert settings["OpenStackSpawner"]["start_timeout"] == 660
    assert bursting["start_timeout"] == 660
    # VMs reach the hub's API on the hub's address; the proxy keeps loopback.
    port = settings["JupyterHub"]["hub_bind_url"].rpartition(":")[2]
    assert settings["JupyterHub"]["hub_bind_url"] == f"http://0.0.0.0:{port}"
    assert settings["JupyterHub"]["hub_connect_url"] == f"http://127.0.0.1:{port}"
    assert "hub_ip" not in settings["JupyterHub"]


def test_the_openstack_backend_alone(tmp_path):
    profiles = [{"name": "small", "default": True}, PROFILES[1]]
    loaded = site(tmp_path, profiles=profiles, spawner={"backend": "openstack"},
                  openstack={**CLOUD, "hub_address": "10.0.2.2"})
    settings = jupyterhub_settings(loaded, Passwords("u" * 12, "a" * 32), "chp")
    assert settings["JupyterHub"]["spawner_class"] == "kioskhub.spawner.openstack.OpenStackSpawner"
    assert settings["JupyterHub"]["hub_ip"] == "127.0.0.1"  # qemu's 10.0.2.2 is loopback


def spec(environment: str, image: str | None = None, profile: str = "small") -> LaunchSpec:
    return LaunchSpec(
        username="ada", environment=EnvironmentSpec(environment, "image", image=image),
        profile=profile, cpu=1, memory_bytes=2**30, home=None, default_url="/lab",
    )


def test_the_vm_plan_picks_flavor_and_image(tmp_path):
    settings = site(tmp_path).openstack
    legacy = vm_plan(spec("legacy", "registry.lab.org/legacy:1"), settings, None)
    assert (legacy.flavor, legacy.image, legacy.container_image) == ("m1.small", "centos-7", None)
    own = vm_plan(spec("default", profile="gpu"), settings, "localhost:5000/kioskhub/base:1")
    assert (own.flavor, own.image, own.container_image) == (
        "g1", "debian-12-kioskhub", "localhost:5000/kioskhub/base:1")
    with pytest.raises(ChoiceError, match="neither a Glance image"):
        vm_plan(spec("default"), settings, None)
    with pytest.raises(ChoiceError, match="has no OpenStack flavor"):
        vm_plan(spec("default", profile="tiny"), settings, "x:1")


def test_names_addresses_and_messages():
    assert vm_names("ada", "", "0a1b2c3d").server == "kh-0a1b2c3d-ada"
    assert vm_names("ada", "gpu", "0a1b2c3d").volume == "kh-0a1b2c3d-home-ada"
    env = vm_reachable_env(
        {"JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api", "OTHER": "http://127.0.0.1/"},
        "10.0.0.5",
    )
    assert env == {"JUPYTERHUB_API_URL": "http://10.0.0.5:8081/hub/api",
                   "OTHER": "http://127.0.0.1/"}
    assert server_address({"lab": [{"addr": "10.1.0.7", "OS-EXT-IPS:type": "fixed"}]}, "") == (
        "10.1.0.7")
    assert fault_message({"message": "No valid host was found. "}, "g1").startswith(
        "The cloud has no room for a g1 VM right now (Nova: No valid host was found.)")
    assert cloud_refusal("home volume", 413, "VolumeSizeExceedsAvailableQuota: ...") == (
        "The cloud's quota is exhausted, so no home volume could be made "
        "(VolumeSizeExceedsAvailableQuota: ...).")
    assert console_failure("boot\nok\n") is None
    assert console_failure("a\nb\nKIOSKHUB-SERVER-FAILED exit status 1\n", lines=2) == (
        "b\nKIOSKHUB-SERVER-FAILED exit status 1")
