"""KubeSpawner's profile_list, generated from the site's profiles and environments."""

from __future__ import annotations

from kioskhub.hub.schema.choices import Environment, GpuRequest, ResourceProfile
from kioskhub.hub.schema.pods import PodProfile, PodSettings, Toleration
from kioskhub.spawner.kube_profiles import profile_list

ENVIRONMENTS = (
    Environment(name="default", display_name="Python 3", default=True),
    Environment(name="root", kind="image", image="rocker/r-ver:4.4", groups=("hep",)),
)
PROFILES = (
    ResourceProfile(name="small", display_name="Small", cpu=1, memory="2G", default=True),
    ResourceProfile(name="a100", display_name="A100", description="For training.", cpu=8,
                    memory="64Gi", gpu=GpuRequest(count=2, type="A100"), groups=("hep",)),
)
PODS = PodSettings(
    image="quay.io/jupyter/base-notebook:2024-10-07",
    profiles=(
        PodProfile(name="a100", node_selector={"nvidia.com/gpu.product": "A100"},
                   tolerations=(Toleration(key="nvidia.com/gpu", operator="Exists"),)),
    ),
)


def test_profile_list_for_a_member_of_every_group():
    assert profile_list(ENVIRONMENTS, PROFILES, ["hep"], PODS) == [
        {
            "display_name": "Small",
            "slug": "small",
            "description": "1 CPU · 2 GB memory",
            "default": True,
            "kubespawner_override": {
                "cpu_limit": 1.0, "cpu_guarantee": 1.0,
                "mem_limit": 2 * 10**9, "mem_guarantee": 2 * 10**9,
            },
            "profile_options": {
                "environment": {
                    "display_name": "Environment",
                    "choices": {
                        "default": {
                            "display_name": "Python 3", "default": True,
                            "kubespawner_override": {
                                "image": "quay.io/jupyter/base-notebook:2024-10-07"
                            },
                        },
                        "root": {
                            "display_name": "root", "default": False,
                            "kubespawner_override": {"image": "rocker/r-ver:4.4"},
                        },
                    },
                }
            },
        },
        {
            "display_name": "A100",
            "slug": "a100",
            "description": "8 CPU · 64 GiB memory · 2 × A100 GPU — For training.",
            "default": False,
            "kubespawner_override": {
                "cpu_limit": 8.0, "cpu_guarantee": 8.0,
                "mem_limit": 64 * 2**30, "mem_guarantee": 64 * 2**30,
                "extra_resource_limits": {"nvidia.com/gpu": "2"},
                "node_selector": {"nvidia.com/gpu.product": "A100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            },
            "profile_options": {
                "environment": {
                    "display_name": "Environment",
                    "choices": {
                        "default": {
                            "display_name": "Python 3", "default": True,
                            "kubespawner_override": {
                                "image": "quay.io/jupyter/base-notebook:2024-10-07"
                            },
                        },
                        "root": {
                            "display_name": "root", "default": False,
                            "kubespawner_override": {"image": "rocker/r-ver:4.4"},
                        },
                    },
                }
            },
        },
    ]


def test_groups_gate_profiles_and_environments():
    listed = profile_list(ENVIRONMENTS, PROFILES, [], PODS)

    assert [p["slug"] for p in listed] == ["small"]
    assert list(listed[0]["profile_options"]["environment"]["choices"]) == ["default"]
