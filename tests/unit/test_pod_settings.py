"""The ``pods:`` section, the spawner class per backend, the podman plan and the base image
recipe: pure parts of the pod backends, with literal expectations."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.schema.config_file import ConfigError, load_site
from kioskhub.hub.schema.site import PACKAGE_ROOT
from kioskhub.hub.state_dir import Passwords
from kioskhub.spawner.launch_spec import EnvironmentSpec, LaunchSpec
from kioskhub.spawner.pod_image import (
    BaseImageRecipe,
    debian_mirror,
    extension_files,
    server_versions,
)
from kioskhub.spawner.pod_image_build import BuildError, build_base_image
from kioskhub.spawner.podman_cli import CONTAINERS_CONF, podman_env
from kioskhub.spawner.podman_plan import (
    bound_claim,
    hub_tag,
    names_from_state,
    pod_reachable_env,
    pod_reachable_url,
    pod_state,
    podman_names,
)


def write(folder: Path, **config) -> Path:
    (folder / "data").mkdir(exist_ok=True)
    config.setdefault("data_mounts", [{"name": "data", "source": "data"}])
    path = folder / "kioskhub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_full_pods_section_is_accepted(tmp_path):
    site = load_site(
        write(
            tmp_path,
            spawner={"backend": "kubernetes"},
            profiles=[{"name": "small", "default": True},
                      {"name": "gpu", "gpu": {"count": 1, "type": "A100"}}],
            pods={
                "image": "quay.io/jupyter/base-notebook:2024-10-07",
                "namespace": "kioskhub",
                "home": {"storage_class": "ceph-rbd", "capacity": "20Gi"},
                "data_volumes": [
                    {"mount": "data", "type": "nfs", "server": "nfs.lab.org", "path": "/x"}
                ],
                "profiles": [
                    {"name": "gpu", "node_selector": {"nvidia.com/gpu.product": "A100"},
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}
                ],
            },
        )
    )

    assert site.spawner.backend == "kubernetes"
    assert site.pods.data_volumes[0].server == "nfs.lab.org"
    assert site.pods.profiles[0].tolerations[0].operator == "Exists"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"spawner": {"backend": "podman"},
          "pods": {"data_volumes": [{"mount": "data", "type": "nfs", "server": "s",
                                     "path": "/x"}]}},
         "pods.data_volumes: data is a nfs volume, which needs the kubernetes backend"),
        ({"pods": {"data_volumes": [{"mount": "nope"}]}},
         "pods.data_volumes: nope is not a data mount; the data mounts are: data"),
        ({"pods": {"profiles": [{"name": "huge"}]}},
         "pods.profiles: huge is not a resource profile; the profiles are: small"),
        ({"spawner": {"backend": "kubernetes"}},
         "pods.image: the kubernetes backend needs the image of KioskHub's own environment"),
        ({"pods": {"data_volumes": [{"mount": "data", "type": "pvc"}]}},
         "a pvc volume needs claim_name"),
        ({"pods": {"data_volumes": [{"mount": "data", "type": "pvc", "claim_name": "c",
                                     "server": "s"}]}},
         "server is not used by a pvc volume"),
        ({"pods": {"uid": 0}}, "pods.uid"),
        ({"pods": {"profiles": [{"name": "small", "node_selector": {"bad key!": "x"}}]}},
         "not a Kubernetes label key: bad key!"),
        ({"spawner": {"backend": "docker"}}, "spawner.backend"),
        ({"pods": {"hub_connect_url": "hub:8081"}}, "pods.hub_connect_url"),
        ({"pods": {"park_minutes": 30}},
         "pods.park_minutes: parked pods are made by the podman backend; this site's "
         "spawner.backend is local: set pods.park_minutes to 0"),
        ({"spawner": {"backend": "podman"}, "pods": {"park_minutes": -1}}, "pods.park_minutes"),
        ({"spawner": {"backend": "kubernetes"}, "pods": {"image": "lab/notebook:1"},
          "builder": {"enabled": True, "default_builder": "container"}},
         "builder.registry: the kubernetes backend's nodes pull environment images from a "
         "registry, and the container builder has none; set builder.registry"),
    ],
)
def test_pod_config_mistakes_name_the_key_and_the_fix(tmp_path, config, message):
    with pytest.raises(ConfigError) as error:
        load_site(write(tmp_path, **config))

    assert message in str(error.value)


@pytest.mark.parametrize(
    "backend, spawner_class",
    [
        ("local", "kioskhub.spawner.local_process.KioskSpawner"),
        ("podman", "kioskhub.spawner.podman.PodmanSpawner"),
        ("kubernetes", "kioskhub.spawner.kube.KioskKubeSpawner"),
    ],
)
def test_the_backend_picks_the_spawner_class_and_hands_it_the_site(
    tmp_path, backend, spawner_class
):
    pods = {"image": "quay.io/jupyter/base-notebook", "namespace": "lab",
            "hub_connect_url": "http://hub.lab.svc:8081/"}
    site = load_site(write(tmp_path, spawner={"backend": backend, "start_timeout": 77}, pods=pods))
    settings = jupyterhub_settings(site, Passwords("u" * 12, "a" * 32), "chp")

    assert settings["JupyterHub"]["spawner_class"] == spawner_class
    class_settings = settings[spawner_class.rpartition(".")[2]]
    assert class_settings["site"] is site
    assert class_settings["start_timeout"] == 77
    if backend == "kubernetes":
        assert class_settings["namespace"] == "lab"
        assert class_settings["hub_connect_url"] == "http://hub.lab.svc:8081"
    else:
        assert "hub_connect_url" not in class_settings


def ada(server_name: str = "") -> LaunchSpec:
    return LaunchSpec(
        username="ada", environment=EnvironmentSpec("default", "venv"), profile="small",
        cpu=1, memory_bytes=2**30, home=Path("/srv/homes/ada"), default_url="/lab",
        server_name=server_name,
    )


def test_podman_names_carry_the_hub_tag():
    tag = hub_tag(Path("/srv/kioskhub/state"))
    names = podman_names(ada(), tag)

    assert len(tag) == 8
    assert (names.pod, names.home_claim, names.container) == (
        f"kh-{tag}-ada", f"kh-{tag}-home-ada", f"kh-{tag}-ada-notebook"
    )
    assert podman_names(ada("gpu"), tag).pod == f"kh-{tag}-ada--gpu"
    assert hub_tag(Path("/other/state")) != tag


def test_state_round_trip_and_unknown_versions():
    names = podman_names(ada(), "1a2b3c4d")
    state = pod_state(names, 40123, "localhost/kioskhub-base:abc")

    assert state == {
        "podman": {
            "version": 1,
            "pod": "kh-1a2b3c4d-ada",
            "home_claim": "kh-1a2b3c4d-home-ada",
            "hub": "1a2b3c4d",
            "host_port": 40123,
            "image": "localhost/kioskhub-base:abc",
        }
    }
    assert names_from_state(state) == (names, 40123, "localhost/kioskhub-base:abc")
    assert names_from_state({"podman": {**state["podman"], "version": 99}}) is None
    assert names_from_state({}) is None


def test_pods_reach_the_hub_on_loopback_through_slirp():
    assert pod_reachable_url("http://127.0.0.1:8081/hub/api") == "http://10.0.2.2:8081/hub/api"
    assert pod_reachable_url("http://localhost:8081/hub/api/") == "http://10.0.2.2:8081/hub/api/"
    assert pod_reachable_url("http://hub.lab.org:8081/hub/api") == "http://hub.lab.org:8081/hub/api"
    env = pod_reachable_env({
        "JUPYTERHUB_API_URL": "http://127.0.0.1:8081/hub/api",
        "JUPYTERHUB_ACTIVITY_URL": "http://127.0.0.1:8081/hub/api/users/ada/activity",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/ada/",
    })
    assert env == {
        "JUPYTERHUB_API_URL": "http://10.0.2.2:8081/hub/api",
        "JUPYTERHUB_ACTIVITY_URL": "http://10.0.2.2:8081/hub/api/users/ada/activity",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8888/user/ada/",
    }


def test_the_home_claim_is_bound_to_the_users_folder_on_podman():
    claim = {"kind": "PersistentVolumeClaim", "metadata": {"name": "c", "annotations": {"a": "b"}}}

    assert bound_claim(claim, Path("/srv/homes/ada")) == {
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "c",
            "annotations": {
                "a": "b",
                "volume.podman.io/driver": "local",
                "volume.podman.io/type": "none",
                "volume.podman.io/device": "/srv/homes/ada",
                "volume.podman.io/mount-options": "bind",
            },
        },
    }
    assert claim["metadata"]["annotations"] == {"a": "b"}


DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize(
    "sources, mirror",
    [
        ({"debian.sources": DEB822}, "http://deb.debian.org/debian"),
        ({"sources.list": "deb [arch=amd64] http://ftp.de.debian.org/debian/ bookworm main\n"
                          "deb http://security.debian.org/debian-security "
                          "bookworm-security main\n"},
         "http://ftp.de.debian.org/debian"),
        ({"sources.list": "# deb http://old.example.org/debian bookworm main\n"
                          "deb-src http://src.example.org/debian bookworm main\n",
          "mirror.list": "deb https://mirror.lab.org/debian bookworm main contrib\n"},
         "https://mirror.lab.org/debian"),
        ({"nodesource.sources": "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\n"
                                "Suites: nodistro\n"}, "http://deb.debian.org/debian"),
        ({}, "http://deb.debian.org/debian"),
    ],
)
def test_debian_mirror_is_the_one_apt_uses(sources, mirror):
    assert debian_mirror(sources) == mirror


def test_base_image_recipe_is_pinned_to_the_hub_versions():
    recipe = BaseImageRecipe(
        mirror="http://deb.debian.org/debian",
        versions={"jupyterhub": "5.3.0", "jupyterlab": "4.4.0", "ipykernel": "6.29.5",
                  "dask-gateway": "2024.1.0", "dask": "2024.8.0", "distributed": "2024.8.0"},
        extensions={"__init__.py": '"""x"""\n', "memory_notice.py": "print(1)\n"},
    )

    assert recipe.containerfile() == """\
FROM localhost/kioskhub-debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN apt-get update -qq \\
 && apt-get install -y -qq --no-install-recommends python3 python3-venv ca-certificates tini \\
 && rm -rf /var/lib/apt/lists/*
# The host's trust store and package index, where the build is given them
ARG PIP_CERT
ARG PIP_INDEX_URL
RUN python3 -m venv /opt/kioskhub \\
 && /opt/kioskhub/bin/pip install --no-cache-dir --progress-bar off \
--disable-pip-version-check dask==2024.8.0 dask-gateway==2024.1.0 distributed==2024.8.0 \
ipykernel==6.29.5 jupyterhub==5.3.0 jupyterlab==4.4.0
COPY extensions/ /opt/kioskhub/kioskhub-extensions/kioskhub/extensions/
COPY jupyter_server_config.json /opt/kioskhub/etc/jupyter/jupyter_server_config.d/kioskhub.json
RUN /opt/kioskhub/bin/python -c 'import pathlib, sysconfig; \
pathlib.Path(sysconfig.get_paths()["purelib"], "kioskhub-extensions.pth")\
.write_text("/opt/kioskhub/kioskhub-extensions\\n")'
RUN useradd --uid 1000 --gid 100 --create-home --shell /bin/bash jovyan
ENV PATH=/opt/kioskhub/bin:/usr/local/bin:/usr/bin:/bin VIRTUAL_ENV=/opt/kioskhub \
HOME=/home/jovyan SHELL=/bin/bash
USER 1000:100
WORKDIR /home/jovyan
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["jupyterhub-singleuser"]
LABEL org.kioskhub.recipe="2" org.kioskhub.suite="bookworm"
"""
    assert recipe.context_files() == {
        "extensions/__init__.py": '"""x"""\n',
        "extensions/memory_notice.py": "print(1)\n",
        "jupyter_server_config.json": '{\n  "ServerApp": {\n    "jpserver_extensions": {\n'
        '      "kioskhub.extensions.cull_notice": true,\n'
        '      "kioskhub.extensions.data_reads_server": true,\n'
        '      "kioskhub.extensions.gallery_fetch": true,\n'
        '      "kioskhub.extensions.gallery_publish": true,\n'
        '      "kioskhub.extensions.gallery_reexecute": true,\n'
        '      "kioskhub.extensions.memory_notice": true,\n'
        '      "kioskhub.extensions.workshop_notice": true\n    }\n  }\n}\n',
    }
    assert recipe.image_ref == f"localhost/kioskhub-base:{recipe.digest}"
    other_mirror = BaseImageRecipe(mirror="http://ftp.de.debian.org/debian",
                                   versions=recipe.versions, extensions=recipe.extensions)
    assert other_mirror.image_ref == recipe.image_ref
    newer = BaseImageRecipe(versions={**recipe.versions, "jupyterlab": "4.5.0"},
                            extensions=recipe.extensions)
    assert newer.image_ref != recipe.image_ref
    changed_extension = BaseImageRecipe(versions=recipe.versions,
                                        extensions={"__init__.py": "", "memory_notice.py": ""})
    assert changed_extension.image_ref != recipe.image_ref


def test_the_base_image_carries_the_dask_client_at_the_hubs_versions():
    versions = server_versions()

    for name in ("jupyterhub", "jupyterlab", "ipykernel", "nbgitpuller", "dask-gateway", "dask",
                 "distributed", "cloudpickle", "msgpack", "tornado", "toolz"):
        assert versions[name] == version(name)
    assert set(extension_files()) >= {"__init__.py", "memory_notice.py"}


def test_every_podman_command_uses_the_containers_conf_the_project_ships():
    env = podman_env({"PATH": "/usr/bin", "CONTAINERS_CONF": "/etc/containers/containers.conf"})

    assert env == {"PATH": "/usr/bin", "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    assert CONTAINERS_CONF == PACKAGE_ROOT / "spawner" / "containers.conf"
    text = CONTAINERS_CONF.read_text()
    for line in ("[containers]", "default_ulimits = []", "[engine]",
                 'cgroup_manager = "cgroupfs"', 'runtime = "runc"'):
        assert line in text.splitlines()


def test_the_base_image_build_names_the_tools_it_misses(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(BuildError) as error:
        build_base_image(BaseImageRecipe(versions={"jupyterhub": "5.3.0"}), lambda line: None)

    assert str(error.value) == (
        "the base image build needs podman, debootstrap, tar; install the Debian package(s) "
        "podman debootstrap tar (apt-get install podman debootstrap tar)"
    )
