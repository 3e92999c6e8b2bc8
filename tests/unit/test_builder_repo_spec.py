"""Reading a repository's spec files, and the content hash that decides reuse."""

from __future__ import annotations

import pytest

from kioskhub.image_builder.builder_base import BuildFailed, NeedsContainerBuilder
from kioskhub.image_builder.repo_spec import (
    CondaPackage,
    content_hash,
    detect_spec,
    read_environment_yml,
)


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
    assert spec.python_source == "runtime.txt line 1"


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


def test_an_unknown_runtime_names_the_file_and_line(tmp_path):
    with pytest.raises(BuildFailed, match="^runtime.txt line 3 says 'pypy-3.9', not a Python"):
        detect_spec(repo(tmp_path, **{"runtime.txt": "\n\npypy-3.9\n"}))


def test_environment_yml_conda_packages_with_their_lines_and_a_python_pin(tmp_path):
    text = (
        "name: beam\n"
        "channels:\n  - conda-forge\n"
        "dependencies:\n"
        "  - python=3.10\n"
        "  - beamcalc>=1.2\n"
        "  - conda-forge::beam-data\n"
        "  - pip\n"
        "  - pip:\n"
        "    - tomli-w\n"
    )
    spec = detect_spec(repo(tmp_path, **{"environment.yml": text}))
    assert spec.conda_packages == (
        CondaPackage("beamcalc>=1.2", 6),
        CondaPackage("conda-forge::beam-data", 7),
    )
    assert spec.pip_packages == ("tomli-w",)
    assert (spec.python_version, spec.python_source) == ("3.10", "environment.yml line 5")
    assert spec.summary() == [
        "environment.yml (2 conda packages)",
        "environment.yml (1 pip packages)",
        "Python 3.10 (environment.yml)",
    ]


def test_runtime_txt_wins_over_the_python_of_environment_yml(tmp_path):
    spec = detect_spec(
        repo(
            tmp_path,
            **{"environment.yml": "dependencies: [python=3.9]\n", "runtime.txt": "python-3.12"},
        )
    )
    assert (spec.python_version, spec.python_source) == ("3.12", "runtime.txt line 1")


@pytest.mark.parametrize(
    "text, message",
    [
        ("dependencies: [", "environment.yml is not valid YAML at line 1, column 16"),
        ("- a\n- b\n", "environment.yml must be a mapping"),
        ("dependencies:\n  x: 1\n", "environment.yml line 2: 'dependencies' must be a list"),
        ("dependencies:\n  - numpy\n  - {conda: x}\n", "environment.yml line 3: only '- pip:'"),
        ("dependencies:\n  - [a]\n", "environment.yml line 2: a dependency must be"),
    ],
)
def test_broken_environment_yml_names_the_line(text, message):
    with pytest.raises(BuildFailed) as refused:
        read_environment_yml(text)
    assert str(refused.value).startswith(message)


def test_conda_channels_join_the_hash_only_of_a_spec_with_conda_packages(tmp_path):
    args = dict(python_version="3.11.2", builder_version="1", server_packages=(), tree_sha="t")
    pip_only = detect_spec(repo(tmp_path / "a", **{"requirements.txt": "x\n"}))
    assert content_hash(pip_only, **args) == content_hash(
        pip_only, **args, conda_channels=("file:///c",)
    )
    conda = detect_spec(repo(tmp_path / "b", **{"environment.yml": "dependencies: [numpy]\n"}))
    assert content_hash(conda, **args) != content_hash(conda, **args, conda_channels=("file:///c",))


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
