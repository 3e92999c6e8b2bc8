"""Reading a repository's spec files, and the content hash that decides reuse."""

from __future__ import annotations

import pytest

from kioskhub.image_builder.builder_base import BuildFailed, NeedsContainerBuilder
from kioskhub.image_builder.local_builder import choose_python
from kioskhub.image_builder.repo_spec import content_hash, detect_spec, pip_only_dependencies


def repo(tmp_path, **files):
    for name, text in files.items():
        path = tmp_path / name.replace("__", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_requirements_runtime_and_postbuild(tmp_path):
    spec = detect_spec(
        repo(
            tmp_path,
            **{
                "requirements.txt": "tomli-w\n",
                "runtime.txt": "python-3.11\n",
                "postBuild": "echo hi\n",
            },
        )
    )
    assert spec.requirements == tmp_path / "requirements.txt"
    assert spec.python_version == "3.11"
    assert spec.post_build == tmp_path / "postBuild"
    assert not spec.install_project
    assert spec.summary() == ["requirements.txt", "Python 3.11 (runtime.txt)", "postBuild"]


def test_binder_folder_wins_over_the_top_folder(tmp_path):
    spec = detect_spec(
        repo(
            tmp_path,
            **{
                "requirements.txt": "numpy\n",
                "binder__requirements.txt": "tomli-w\n",
                "setup.py": "",
            },
        )
    )
    assert spec.requirements == tmp_path / "binder" / "requirements.txt"
    assert not spec.install_project


def test_pyproject_installs_the_project(tmp_path):
    spec = detect_spec(repo(tmp_path, **{"pyproject.toml": "[project]\nname='x'\n"}))
    assert spec.install_project and spec.uses_local_files


def test_environment_yml_with_only_pip_packages(tmp_path):
    text = (
        "name: x\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n"
        "  - pip:\n    - tomli-w\n    - requests>=2\n"
    )
    assert detect_spec(repo(tmp_path, **{"environment.yml": text})).pip_packages == (
        "tomli-w",
        "requests>=2",
    )


@pytest.mark.parametrize(
    "files, message",
    [
        ({"environment.yml": "dependencies:\n  - numpy\n  - pip:\n    - x\n"}, "conda packages"),
        ({"apt.txt": "libgl1\n"}, "apt.txt asks for system packages"),
        ({"Dockerfile": "FROM x\n"}, "a Dockerfile"),
        ({"install.R": ""}, "R packages"),
        ({"runtime.txt": "r-4.3-2023-10-01\n"}, "R"),
    ],
)
def test_container_only_specs_say_so(tmp_path, files, message):
    with pytest.raises(NeedsContainerBuilder, match=message) as caught:
        detect_spec(repo(tmp_path, **files))
    assert "container builder" in str(caught.value)


def test_bad_runtime_and_missing_interpreter(tmp_path):
    with pytest.raises(BuildFailed, match="write python-3.X"):
        detect_spec(repo(tmp_path, **{"runtime.txt": "pypy\n"}))
    with pytest.raises(BuildFailed, match="asks for Python 3.7, but this machine has 3.11"):
        choose_python("3.7", {"3.11": "/usr/bin/python3.11"})


def test_pip_only_dependencies_refuses_bad_yaml():
    with pytest.raises(BuildFailed, match="not valid YAML"):
        pip_only_dependencies("dependencies: [")


def test_content_hash_depends_on_spec_python_and_builder(tmp_path):
    spec = detect_spec(repo(tmp_path, **{"requirements.txt": "tomli-w\n"}))
    args = dict(
        python_version="3.11.2",
        builder_version="1",
        server_packages=("jupyterlab==4",),
        tree_sha="t1",
    )
    first = content_hash(spec, **args)
    assert content_hash(spec, **{**args, "tree_sha": "t2"}) == first  # README edits: reuse
    assert content_hash(spec, **{**args, "python_version": "3.12.0"}) != first
    assert content_hash(spec, **{**args, "builder_version": "2"}) != first
    (tmp_path / "requirements.txt").write_text("tomli-w==1.0\n")
    assert content_hash(detect_spec(tmp_path), **args) != first
    (tmp_path / "postBuild").write_text("cp data.csv $VIRTUAL_ENV/\n")
    with_post = detect_spec(tmp_path)
    assert content_hash(with_post, **args) != content_hash(with_post, **{**args, "tree_sha": "t2"})
