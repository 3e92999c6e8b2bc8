"""Choosing the Python of a venv build under the site's policy, and the uv command for it."""

from __future__ import annotations

from pathlib import Path

import pytest

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder.builder_base import BuildFailed
from kioskhub.image_builder.local_builder import site_toolchain
from kioskhub.image_builder.python_versions import (
    PythonChoice,
    PythonDownloads,
    choose_python,
    effective_policy,
    nearest_version,
)

MACHINE = {"3.9": Path("/usr/bin/python3.9"), "3.11": Path("/usr/bin/python3.11")}


@pytest.mark.parametrize(
    "wanted, available, nearest",
    [
        ("3.10", ["3.9", "3.11"], "3.11"),  # a tie: the newer one
        ("3.10", ["3.11"], "3.11"),
        ("3.12", ["3.8", "3.11"], "3.11"),
        ("3.6", ["3.8", "3.11"], "3.8"),
        ("3.13", ["3.12", "3.14", "3.9"], "3.14"),
        ("3.11", ["3.11", "3.12"], "3.11"),
        ("3.10", [], None),
        ("3.10", ["2.7"], None),
    ],
)
def test_nearest_version(wanted, available, nearest):
    assert nearest_version(wanted, available) == nearest


@pytest.mark.parametrize(
    "policy, source, effective",
    [
        (None, False, "nearest"),
        (None, True, "download"),
        ("refuse", True, "refuse"),
        ("download", False, "download"),
    ],
)
def test_the_default_policy_depends_on_a_download_source(policy, source, effective):
    assert effective_policy(policy, source) == effective


def test_the_asked_version_when_the_machine_has_it_whatever_the_policy():
    for policy in ("download", "nearest", "refuse"):
        assert choose_python("3.9", MACHINE, policy) == PythonChoice("3.9", MACHINE["3.9"])
    assert choose_python(None, MACHINE, "refuse", own="3.11") == PythonChoice(
        "3.11", MACHINE["3.11"]
    )


def test_nearest_says_what_it_did():
    assert choose_python("3.10", MACHINE, "nearest", where="runtime.txt line 1") == PythonChoice(
        "3.11",
        MACHINE["3.11"],
        note="runtime.txt line 1 asks for Python 3.10; this site has no Python 3.10, so the "
        "environment was built with Python 3.11, the nearest it has.",
    )


def test_download_leaves_the_path_to_uv():
    assert choose_python("3.10", MACHINE, "download") == PythonChoice("3.10", None)


def test_refuse_names_the_file_line_and_what_there_is():
    with pytest.raises(BuildFailed) as refused:
        choose_python("3.10", MACHINE, "refuse", where="environment.yml line 4")
    assert str(refused.value).startswith(
        "environment.yml line 4 asks for Python 3.10, but this machine has 3.9, 3.11; "
    )
    with pytest.raises(BuildFailed, match="this machine has none"):
        choose_python("3.10", {}, "nearest")


def test_the_uv_install_command_and_environment_use_only_the_sites_source(tmp_path):
    downloads = PythonDownloads(
        tmp_path / "pythons",
        mirror="https://mirror.example.org/pbs",
        downloads_json="file:///srv/pythons/downloads.json",
    )
    target = tmp_path / "pythons" / "3.10"
    assert downloads.install_command("/opt/uv", "3.10", target) == [
        "/opt/uv",
        "python",
        "install",
        "--no-config",
        "--no-bin",
        "--no-registry",
        "--install-dir",
        str(target),
        "--python-downloads-json-url",
        "file:///srv/pythons/downloads.json",
        "3.10",
    ]
    env = downloads.install_environment(tmp_path, tmp_path / "cache")
    assert env["UV_PYTHON_INSTALL_MIRROR"] == "https://mirror.example.org/pbs"
    assert env["UV_CACHE_DIR"] == str(tmp_path / "cache")
    assert env["UV_NO_CONFIG"] == "1" and env["HOME"] == str(tmp_path / "home")
    assert "UV_PYTHON_INSTALL_MIRROR" not in PythonDownloads(tmp_path).install_environment(
        tmp_path, tmp_path
    )


def test_an_unsealed_install_is_not_offered(tmp_path):
    folder = tmp_path / "pythons" / "3.10" / "cpython-3.10.4-linux-x86_64-gnu" / "bin"
    folder.mkdir(parents=True)
    (folder / "python3.10").write_text("")
    downloads = PythonDownloads(tmp_path / "pythons")
    assert downloads.installed() == {}
    (tmp_path / "pythons" / "3.10" / "kioskhub-python.json").write_text("{}")
    assert downloads.installed() == {"3.10": folder / "python3.10"}


def test_the_site_settings_become_the_builders_options(tmp_path):
    plain = site_toolchain(BuilderSettings(), tmp_path)
    assert plain["python_policy"] == "nearest"
    assert plain["conda_channels"] == () and plain["conda_pypi_fallback"] is False
    mirrored = site_toolchain(
        BuilderSettings(
            python_downloads_mirror="file:///srv/pbs", conda_channels=("file:///srv/conda/",)
        ),
        tmp_path,
    )
    assert mirrored["python_policy"] == "download"
    assert mirrored["python_downloads"] == PythonDownloads(
        tmp_path / "pythons", mirror="file:///srv/pbs"
    )
    assert mirrored["conda_channels"] == ("file:///srv/conda",)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"python_policy": "latest"}, "python_policy"),
        ({"python_downloads_mirror": "github.com/x"}, "is not a URL"),
        ({"conda_channels": ["conda-forge"]}, "is not a channel URL"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        BuilderSettings(**settings)
