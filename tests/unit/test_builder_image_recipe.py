"""The container builder's pure parts: the spec it reads, the Containerfile, the messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from kioskhub.image_builder.builder_base import BuildFailed
from kioskhub.image_builder.container_spec import AptPackage, ContainerSpec, detect_container_spec
from kioskhub.image_builder.image_build_output import failure_message
from kioskhub.image_builder.image_recipe import image_key, image_recipe
from kioskhub.image_builder.podman_image_builder import (
    cgroup_parent,
    image_name,
    push_repository,
    split_tag,
)

BASE = "localhost/kioskhub-base:36b733684469"


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def test_every_part_in_cache_order(tmp_path):
    spec = detect_container_spec(
        write(
            tmp_path,
            {
                "apt.txt": "# tools\njq\n\ncurl  # for downloads\n",
                "requirements.txt": "numpy==2.0\n",
                "environment.yml": "dependencies:\n  - python=3.11\n  - pip:\n    - tomli-w\n",
                "setup.py": "from setuptools import setup\nsetup()\n",
                "postBuild": "#!/bin/bash\necho hi\n",
                "start": '#!/bin/bash\nexec "$@"\n',
            },
        )
    )
    assert spec.apt_packages == (AptPackage("jq", 2), AptPackage("curl", 4))
    recipe = image_recipe(spec, BASE)
    assert recipe.containerfile == (
        "FROM localhost/kioskhub-base:36b733684469\n"
        "USER root\n"
        "RUN chown -R 1000:100 /opt/kioskhub \\\n"
        " && install -d -o 1000 -g 100 /srv/repo /tmp/kioskhub-build\n"
        "RUN apt-get update -qq \\\n"
        " && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends"
        " jq curl \\\n"
        " && apt-get clean && rm -rf /var/lib/apt/lists/*\n"
        "USER 1000:100\n"
        "ARG PIP_CERT\n"
        "ARG PIP_INDEX_URL\n"
        "WORKDIR /srv/repo\n"
        "COPY --chown=1000:100 kioskhub/requirements.txt /tmp/kioskhub-build/requirements.txt\n"
        "RUN pip install --no-cache-dir --progress-bar off --disable-pip-version-check"
        " -r /tmp/kioskhub-build/requirements.txt\n"
        "COPY --chown=1000:100 kioskhub/environment-pip.txt"
        " /tmp/kioskhub-build/environment-pip.txt\n"
        "RUN pip install --no-cache-dir --progress-bar off --disable-pip-version-check"
        " -r /tmp/kioskhub-build/environment-pip.txt\n"
        "COPY --chown=1000:100 repo/ /srv/repo/\n"
        "RUN pip install --no-cache-dir --progress-bar off --disable-pip-version-check .\n"
        "RUN chmod +x ./postBuild && ./postBuild\n"
        "RUN chmod +x /srv/repo/start\n"
        "WORKDIR /home/jovyan\n"
        "ENV KIOSKHUB_REPO_DIR=/srv/repo\n"
        'ENTRYPOINT ["/usr/bin/tini", "--", "/srv/repo/start"]\n'
        'CMD ["jupyterhub-singleuser"]\n'
        'LABEL org.kioskhub.builder="podman" org.kioskhub.recipe="1"\n'
    )
    assert recipe.context_files == {
        "requirements.txt": b"numpy==2.0\n",
        "environment-pip.txt": b"tomli-w\n",
    }
    assert recipe.label_of_step(4) == "apt.txt"
    assert recipe.label_of_step(15) == "postBuild"


def test_an_empty_repository_gets_the_server_only(tmp_path):
    recipe = image_recipe(detect_container_spec(tmp_path), BASE)
    assert recipe.containerfile == (
        "FROM localhost/kioskhub-base:36b733684469\n"
        "USER root\n"
        "RUN chown -R 1000:100 /opt/kioskhub \\\n"
        " && install -d -o 1000 -g 100 /srv/repo /tmp/kioskhub-build\n"
        "USER 1000:100\n"
        "ARG PIP_CERT\n"
        "ARG PIP_INDEX_URL\n"
        "WORKDIR /srv/repo\n"
        "COPY --chown=1000:100 repo/ /srv/repo/\n"
        "WORKDIR /home/jovyan\n"
        "ENV KIOSKHUB_REPO_DIR=/srv/repo\n"
        'ENTRYPOINT ["/usr/bin/tini", "--"]\n'
        'CMD ["jupyterhub-singleuser"]\n'
        'LABEL org.kioskhub.builder="podman" org.kioskhub.recipe="1"\n'
    )


def test_binder_folder_and_local_requirements_install_after_the_files(tmp_path):
    spec = detect_container_spec(
        write(tmp_path, {"binder/requirements.txt": "-e .\n", "binder/postBuild": "true\n"})
    )
    steps = image_recipe(spec, BASE).containerfile.splitlines()
    copy = steps.index("COPY --chown=1000:100 repo/ /srv/repo/")
    assert steps[copy + 1] == (
        "RUN pip install --no-cache-dir --progress-bar off --disable-pip-version-check"
        " -r binder/requirements.txt"
    )
    assert steps[copy + 2] == "RUN chmod +x ./binder/postBuild && ./binder/postBuild"
    assert not any("kioskhub/requirements.txt" in step for step in steps)


def test_a_requirements_change_keeps_the_apt_layer_and_changes_the_key(tmp_path):
    one = image_recipe(
        detect_container_spec(write(tmp_path, {"apt.txt": "jq\n", "requirements.txt": "a\n"})),
        BASE,
    )
    two = image_recipe(detect_container_spec(write(tmp_path, {"requirements.txt": "b\n"})), BASE)
    assert one.steps[:5] == two.steps[:5]
    assert one.containerfile == two.containerfile
    assert image_key(one, BASE, "tree") != image_key(two, BASE, "tree")
    assert image_key(one, BASE, "tree") != image_key(one, BASE, "other tree")
    assert image_key(one, BASE, "tree") == image_key(one, BASE, "tree")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jq\nNot A Package\n", "apt.txt line 2: (an entry not shown) is not a Debian package"),
        ("jq\n$(reboot)\n", "apt.txt line 2: (an entry not shown) is not a Debian package"),
        ("-o=APT::Foo\n", "apt.txt line 1: (an entry not shown) is not a Debian package"),
        ("jq curl\n", "apt.txt line 1: (an entry not shown) is not a Debian package name"),
    ],
)
def test_apt_lines_that_are_not_package_names_are_refused_by_line(tmp_path, text, message):
    write(tmp_path, {"apt.txt": text})
    with pytest.raises(BuildFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        detect_container_spec(tmp_path)


def test_a_dockerfile_is_refused_unless_the_site_allows_it(tmp_path):
    write(tmp_path, {"Dockerfile": "FROM scratch\n", "requirements.txt": "a\n"})
    with pytest.raises(
        BuildFailed, match=r"Dockerfile: this site does not build .*allow_dockerfile"
    ):
        detect_container_spec(tmp_path)
    spec = detect_container_spec(tmp_path, allow_dockerfile=True)
    assert spec.dockerfile and spec.summary() == ["the repository's own Dockerfile"]


def test_conda_packages_and_other_pythons_are_refused_naming_the_file(tmp_path):
    write(tmp_path, {"binder/environment.yml": "dependencies:\n  - numpy\n"})
    with pytest.raises(BuildFailed, match=r"^binder/environment.yml lists conda packages"):
        detect_container_spec(tmp_path)
    write(tmp_path, {"binder/environment.yml": "{}", "binder/runtime.txt": "python-3.9\n"})
    with pytest.raises(BuildFailed, match=r"binder/runtime.txt line 1 asks for Python 3.9, but"):
        detect_container_spec(tmp_path)
    write(tmp_path, {"binder/runtime.txt": "python-3.11\n", "binder/install.R": ""})
    with pytest.raises(BuildFailed, match=r"^binder/install.R asks for R packages"):
        detect_container_spec(tmp_path)


def test_another_python_builds_on_the_base_images_python_where_the_site_allows_nearest(tmp_path):
    write(tmp_path, {"runtime.txt": "\npython-3.9\n", "requirements.txt": "tomli-w\n"})

    spec = detect_container_spec(tmp_path, python_policy="nearest")

    assert spec.notes == (
        "runtime.txt line 2 asks for Python 3.9; the image was built with Python 3.11, the "
        "site base image's.",
    )
    assert spec.requirements
    assert detect_container_spec(tmp_path, python_policy="download").notes == spec.notes
    with pytest.raises(BuildFailed, match=r"^runtime.txt line 2 asks for Python 3.9, but the site"):
        detect_container_spec(tmp_path, python_policy="refuse")
    write(tmp_path, {"runtime.txt": "python-3.11\n"})
    assert detect_container_spec(tmp_path, python_policy="nearest").notes == ()


def test_an_apt_txt_link_out_of_the_checkout_is_refused(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "apt.txt").symlink_to("/etc/passwd")
    with pytest.raises(BuildFailed, match="apt.txt is a symbolic link that points outside"):
        detect_container_spec(repo)


def apt_failure_output() -> str:
    return "\n".join(
        [
            "STEP 3/9: RUN chown -R 1000:100 /opt/kioskhub",
            "--> abc",
            "STEP 4/9: RUN apt-get update -qq && apt-get install jq nosuchpkg",
            "Reading package lists...",
            "E: Unable to locate package nosuchpkg",
            'Error: building at STEP "RUN apt-get update": while running runtime: exit status 100',
        ]
    )


def test_an_unknown_apt_package_is_named_with_its_line(tmp_path):
    spec = detect_container_spec(write(tmp_path, {"apt.txt": "jq\n\nnosuchpkg\n"}))
    message = failure_message(apt_failure_output(), image_recipe(spec, BASE), spec, 1)
    assert message.startswith("apt.txt line 3: Debian has no package 'nosuchpkg'")


def test_a_failing_post_build_gives_its_exit_status_and_last_lines(tmp_path):
    spec = detect_container_spec(write(tmp_path, {"postBuild": "exit 2\n"}))
    recipe = image_recipe(spec, BASE)
    number = next(i for i, step in enumerate(recipe.steps, 1) if step.label == "postBuild")
    output = "\n".join(
        [
            f"STEP {number}/14: RUN chmod +x ./postBuild && ./postBuild",
            "one",
            "two <b>",
            'time="2026" level=warning msg="noise"',
            'Error: building at STEP "RUN chmod": while running runtime: exit status 2',
        ]
    )
    assert failure_message(output, recipe, spec, 1) == (
        "postBuild failed (exit 2) — last lines: one / two <b>"
    )


def test_names_tags_and_cgroup_parents():
    assert image_name("Ada", "My Env!") == "kioskhub-env/ada-my-env"
    assert split_tag("127.0.0.1:5000/lab/env:v1") == ("127.0.0.1:5000/lab/env", "v1")
    assert split_tag("127.0.0.1:5000/lab/env") == ("127.0.0.1:5000/lab/env", None)
    assert push_repository("127.0.0.1:5000/kioskhub/", "kioskhub-env/ada-x") == (
        "127.0.0.1:5000/kioskhub/ada-x"
    )
    mounts = (
        "cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    )
    assert cgroup_parent("/sys/fs/cgroup/pids/svc/kioskhub-builds/container-7", mounts) == (
        "/svc/kioskhub-builds/container-7"
    )
    assert cgroup_parent("/elsewhere/x", mounts) == ""
    assert ContainerSpec().summary() == ["no spec files: the server packages only"]
