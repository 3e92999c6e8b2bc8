"""Which environment runs where, and how a pod gets its image and reaches Dask: the pure
parts, with literal expectations.

Image environments run on the pod backends by their reference (a registry reference pinned
by digest included), pulled with TLS checks except from the registries the site lists as
insecure; venv environments run on the local backend; the spawn form shows the others as
options that cannot be chosen, with the reason. Code in a podman pod reaches the hub and the
Dask Gateway at slirp4netns' address of the host's loopback.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.config_file import ConfigError, load_site
from kioskhub.hub.schema.pods import PodSettings
from kioskhub.spawner.environment_kinds import BACKEND_KINDS, refusal
from kioskhub.spawner.kube import KioskKubeSpawner
from kioskhub.spawner.launch_spec import EnvironmentSpec, LaunchSpec, build_launch_spec
from kioskhub.spawner.local_process import KioskSpawner
from kioskhub.spawner.openstack import OpenStackSpawner
from kioskhub.spawner.pod_manifest import PodTarget, build_pod, environment_image
from kioskhub.spawner.podman import PodmanSpawner
from kioskhub.spawner.podman_plan import pod_reachable_env
from kioskhub.spawner.podman_pull import (
    ImageUnavailable,
    ensure_image,
    image_registry,
    pull_arguments,
    pull_progress,
    tls_arguments,
)
from kioskhub.spawner.spawn_form import render_spawn_form
from tests.unit.test_pod_settings import write

DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = f"localhost:5000/kioskhub/env@{DIGEST}"


@pytest.mark.parametrize(
    "ref, registry",
    [
        (PINNED, "localhost:5000"),
        ("registry.lab.org/analysis/env:2024", "registry.lab.org"),
        ("quay.io/jupyter/base-notebook", "quay.io"),
        ("localhost/kioskhub-base:abc", "localhost"),
        ("debian:12", "docker.io"),
        ("jupyter/base-notebook", "docker.io"),
    ],
)
def test_the_registry_of_an_image_is_read_as_podman_reads_it(ref, registry):
    assert image_registry(ref) == registry


def test_tls_is_verified_except_for_the_registries_the_site_lists_as_insecure():
    insecure = ("localhost:5000",)

    assert pull_arguments(PINNED, insecure) == ("pull", "--tls-verify=false", PINNED)
    assert pull_arguments(PINNED, ()) == ("pull", PINNED)
    assert pull_arguments("localhost:5001/kioskhub/env:1", insecure) == (
        "pull", "localhost:5001/kioskhub/env:1"
    )
    assert pull_arguments("quay.io/a/b:1", insecure) == ("pull", "quay.io/a/b:1")
    assert pull_arguments("localhost/kioskhub-base:abc", insecure) is None
    assert tls_arguments(PINNED, insecure) == ("--tls-verify=false",)
    assert tls_arguments("quay.io/a/b:1", insecure) == ()


@pytest.mark.parametrize(
    "ref", ["--authfile=/etc/shadow", "-q", "a b", "x:1\n--tls-verify=false", ""]
)
def test_a_reference_podman_would_read_as_an_option_is_refused_before_podman_runs(
    ref, tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no podman at all: nothing may be run
    seen = []

    with pytest.raises(ImageUnavailable) as refused:
        asyncio.run(ensure_image(ref, ("localhost:5000",), seen.append))

    assert str(refused.value) == (
        f"{ref!r} is not an image reference (like registry.example.org/lab/env:tag or "
        "localhost:5000/lab/env@sha256:...); the site's admins must correct the "
        "environment's image."
    )
    assert seen == []


def test_a_pull_shows_in_the_spawn_progress_as_a_person_reads_it():
    lines = [
        f"Trying to pull {PINNED}...",
        "Getting image source signatures",
        "Copying blob sha256:4f4fb700ef54461cfa02571ae0db9a0dc1e0cdb5577484a6d75e68dc38e8acc1",
        "Copying blob 9d8f1e6b2c3a skipped: already exists",
        "Copying config sha256:aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899",
        "Writing manifest to image destination",
        "Storing signatures",
        "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899",
    ]

    assert [text for line in lines if (text := pull_progress(line))] == [
        f"Pulling {PINNED}",
        "Copying layer 4f4fb700ef54",
        "Copying layer 9d8f1e6b2c3a (already here)",
        "Copying image config aabbccddeeff",
        "Writing the image to podman's storage",
    ]


def test_insecure_registries_default_to_none_and_are_validated(tmp_path):
    assert PodSettings().insecure_registries == ()
    site = load_site(write(tmp_path, pods={"insecure_registries": ["localhost:5000"]}))
    assert site.pods.insecure_registries == ("localhost:5000",)

    for bad, message in [
        ("http://localhost:5000", "'http://localhost:5000' is not a registry: write its host "
                                  "or host:port, without a scheme or a path, e.g. localhost:5000"),
        ("localhost:5000/kioskhub", "'localhost:5000/kioskhub' is not a registry"),
    ]:
        with pytest.raises(ConfigError) as error:
            load_site(write(tmp_path, pods={"insecure_registries": [bad]}))
        assert "pods.insecure_registries" in str(error.value)
        assert message in str(error.value)
    with pytest.raises(ConfigError) as error:
        load_site(write(tmp_path, pods={"insecure_registries": ["a:1", "a:1"]}))
    assert "listed twice: a:1" in str(error.value)


def test_pods_pull_from_the_builders_registry_as_the_builder_pushes_to_it(tmp_path):
    insecure = {"registry": "127.0.0.1:5000/kioskhub", "registry_insecure": True}
    site = load_site(write(tmp_path, builder=insecure))
    assert site.pull_insecure_registries() == ("127.0.0.1:5000",)
    site = load_site(write(tmp_path, builder={**insecure, "registry_insecure": False}))
    assert site.pull_insecure_registries() == ()
    site = load_site(
        write(tmp_path, builder=insecure, pods={"insecure_registries": ["127.0.0.1:5000", "b:1"]})
    )
    assert site.pull_insecure_registries() == ("127.0.0.1:5000", "b:1")


def spec(environment: EnvironmentSpec) -> LaunchSpec:
    return LaunchSpec(
        username="ada",
        environment=environment,
        profile="small",
        cpu=1,
        memory_bytes=2**30,
        home=Path("/srv/homes/ada"),
        default_url="/lab",
    )


def test_kubernetes_gets_the_image_environments_reference_pinned_by_digest():
    pinned = spec(EnvironmentSpec("analysis", "image", image=PINNED))
    pods = PodSettings(image="quay.io/jupyter/base-notebook:2024")
    image = environment_image(pinned, pods, None)

    pod = build_pod(pinned, pods, PodTarget(pod_name="jupyter-ada", home_claim="claim-ada",
                                             image=image))

    assert image == PINNED
    assert [(c["name"], c["image"], c["imagePullPolicy"]) for c in pod["spec"]["containers"]] == [
        ("notebook", "localhost:5000/kioskhub/env@sha256:" + "0123456789abcdef" * 4,
         "IfNotPresent")
    ]


def test_code_in_a_podman_pod_reaches_the_dask_gateway_on_the_hosts_loopback(tmp_path):
    site = load_site(write(
        tmp_path,
        hub={"url": "http://127.0.0.1:8000"},
        spawner={"backend": "podman"},
        dask={"enabled": True, "ports": {"http": 8082, "scheduler_proxy": 8083, "api": 8084}},
    ))
    env = build_launch_spec(site, "ada").env

    assert {key: value for key, value in pod_reachable_env(env).items()
            if key.startswith("DASK_")} == {
        "DASK_GATEWAY__ADDRESS": "http://10.0.2.2:8082/services/dask-gateway",
        "DASK_GATEWAY__PUBLIC_ADDRESS": "http://127.0.0.1:8000/services/dask-gateway",
        "DASK_GATEWAY__PROXY_ADDRESS": "gateway://10.0.2.2:8083",
        "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        "DASK_GATEWAY__CLUSTER__OPTIONS__PROFILE": "'small'",
        "DASK_GATEWAY__CLUSTER__OPTIONS__ENVIRONMENT": "'default'",
        "DASK_LABEXTENSION__FACTORY__MODULE": "dask_gateway",
        "DASK_LABEXTENSION__FACTORY__CLASS": "GatewayCluster",
    }


@pytest.mark.parametrize(
    "spawner_class", [KioskSpawner, PodmanSpawner, KioskKubeSpawner, OpenStackSpawner]
)
def test_each_backend_runs_the_kinds_of_its_row_in_the_one_table(spawner_class):
    assert spawner_class.runnable_kinds == BACKEND_KINDS[spawner_class.backend_name]


IMAGE = Environment(name="rstudio", kind="image", image=PINNED)
VENV = Environment(name="lab-venv", path="/opt/venvs/lab")
UNBUILT = Environment(name="thesis", kind="repository", repository="https://git.lab.org/t.git")


def test_what_a_user_is_told_where_an_environment_cannot_run():
    assert refusal(IMAGE, "local") == (
        "The environment 'rstudio' is a container image, which the local backend cannot run; "
        "it runs on sites whose spawner.backend is podman, kubernetes or "
        "openstack. Choose another environment."
    )
    assert refusal(VENV, "podman") == (
        "The environment 'lab-venv' is a venv on the hub's machine, which the podman backend "
        "cannot use (a pod has only its image); it runs on sites whose spawner.backend is "
        "local. Choose another environment."
    )
    assert refusal(UNBUILT, "kubernetes") == (
        "The environment 'thesis' has not been built yet. Build it first."
    )


def test_the_form_shows_an_environment_the_backend_cannot_run_disabled_with_the_reason():
    default = Environment(name="default", display_name="Python 3", default=True)
    hostile = Environment(name="evil", kind="image", image="x:1",
                          display_name="<img src=x onerror=alert(1)>")
    refused = {"rstudio": refusal(IMAGE, "local"), "evil": refusal(hostile, "local")}

    form = render_spawn_form([IMAGE, default, hostile], [], {"environment": "rstudio"}, refused)

    assert (
        '<label class="kh-choice kh-unavailable" id="kh-environment-rstudio">'
        '<input type="radio" name="environment" value="rstudio" disabled>'
        '<span class="kh-title">rstudio</span><div class="kh-desc"></div>'
        f'<div class="kh-res">{PINNED}</div>'
        '<div class="kh-why">The environment &#x27;rstudio&#x27; is a container image, which '
        "the local backend cannot run; it runs on sites whose spawner.backend is podman, "
        "kubernetes or openstack. Choose another environment.</div></label>"
    ) in form
    assert '<input type="radio" name="environment" value="default" checked>' in form
    assert "<img" not in form and "&lt;img src=x onerror=alert(1)&gt;" in form
    assert form.count(" disabled>") == 2
    assert 'value="evil" disabled>' in form
