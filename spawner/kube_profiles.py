"""The site's choices as KubeSpawner's ``profile_list``: generated, never written twice.

Pure. One profile per resource profile the user may use, each with an ``environment``
option listing the environments they may use. KubeSpawner's form then posts
``{"profile": <profile>, "environment": <environment>}``, the very options that launch
links and the REST API take. The overrides keep KubeSpawner's own traits (image, limits,
node selector, tolerations) truthful for everything that reads them; the pod itself is built
from the LaunchSpec by ``pod_manifest``.

Display names and descriptions are plain text (a user names their own environments), and
KubeSpawner's form template inserts them unescaped: they are HTML-escaped here.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from kioskhub.hub.schema.choices import Environment, ResourceProfile
from kioskhub.hub.schema.pods import PodSettings

from .launch_spec import allowed
from .spawn_form import describe_resources


def environment_image_name(environment: Environment, pods: PodSettings) -> str | None:
    return environment.image if environment.kind == "image" else pods.image


def profile_overrides(profile: ResourceProfile, pods: PodSettings) -> dict[str, Any]:
    placement = next((p for p in pods.profiles if p.name == profile.name), None)
    overrides: dict[str, Any] = {
        "cpu_limit": profile.cpu,
        "cpu_guarantee": profile.cpu,
        "mem_limit": profile.memory,
        "mem_guarantee": profile.memory,
    }
    if profile.gpu.count:
        overrides["extra_resource_limits"] = {pods.gpu_resource: str(profile.gpu.count)}
    if placement and placement.node_selector:
        overrides["node_selector"] = dict(placement.node_selector)
    if placement and placement.tolerations:
        overrides["tolerations"] = [t.model_dump(exclude_none=True) for t in placement.tolerations]
    return overrides


def profile_list(
    environments: Iterable[Environment],
    profiles: Iterable[ResourceProfile],
    groups: Iterable[str],
    pods: PodSettings,
) -> list[dict[str, Any]]:
    """KubeSpawner's ``profile_list`` for a member of ``groups``."""
    groups = list(groups)
    usable_environments = allowed(environments, groups)
    default_environment = next(
        (e.name for e in usable_environments if e.default),
        usable_environments[0].name if usable_environments else None,
    )
    choices = {
        environment.name: {
            "display_name": escape(environment.title),
            "default": environment.name == default_environment,
            "kubespawner_override": {"image": environment_image_name(environment, pods)},
        }
        for environment in usable_environments
    }
    usable_profiles = allowed(profiles, groups)
    default_profile = next(
        (p.name for p in usable_profiles if p.default),
        usable_profiles[0].name if usable_profiles else None,
    )
    return [
        {
            "display_name": escape(profile.title),
            "slug": profile.name,
            "description": escape(
                " — ".join(
                    part for part in (describe_resources(profile), profile.description) if part
                )
            ),
            "default": profile.name == default_profile,
            "kubespawner_override": profile_overrides(profile, pods),
            "profile_options": {"environment": {"display_name": "Environment", "choices": choices}},
        }
        for profile in usable_profiles
    ]
