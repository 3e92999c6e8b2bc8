"""What a venv build does with environment.yml's conda packages: channels, fallback, refusal."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kioskhub.image_builder.builder_base import BuildFailed, NeedsContainerBuilder
from kioskhub.image_builder.conda_environment import (
    UNSOLVABLE,
    CondaPlan,
    conda_to_pip,
    install_command,
    plan_conda,
    solver_failure,
)
from kioskhub.image_builder.repo_spec import CondaPackage

PACKAGES = (CondaPackage("numpy=1.26", 5), CondaPackage("pytorch>=2", 6))


@pytest.mark.parametrize(
    "spec, requirement",
    [
        ("numpy", "numpy"),
        ("numpy=1.26", "numpy==1.26.*"),
        ("numpy=1.26.*", "numpy==1.26.*"),
        ("numpy=1.26=py311_0", "numpy==1.26.*"),
        ("scipy 1.11.*", "scipy==1.11.*"),
        ("scipy==1.11.2", "scipy==1.11.2"),
        ("pytorch>=2", "torch>=2"),
        ("conda-forge::pandas>=2,<3", "pandas>=2,<3"),
        ("matplotlib-base", "matplotlib"),
    ],
)
def test_conda_to_pip(spec, requirement):
    assert conda_to_pip(spec) == requirement


def test_with_channels_the_packages_are_conda_packages():
    assert plan_conda(PACKAGES, ("file:///srv/conda",), pypi_fallback=True) == CondaPlan(
        conda_specs=("numpy=1.26", "pytorch>=2"),
        log_lines=("Conda packages from the site's channels: file:///srv/conda",),
    )
    assert plan_conda((), (), pypi_fallback=False) == CondaPlan()


def test_the_pypi_fallback_logs_every_mapping():
    assert plan_conda(PACKAGES, (), pypi_fallback=True) == CondaPlan(
        pip_packages=("numpy==1.26.*", "torch>=2"),
        log_lines=(
            "environment.yml line 5: conda 'numpy=1.26' → PyPI 'numpy==1.26.*' "
            "(no conda channel on this site)",
            "environment.yml line 6: conda 'pytorch>=2' → PyPI 'torch>=2' "
            "(no conda channel on this site)",
        ),
    )


def test_without_channel_or_fallback_the_build_is_refused_naming_file_lines_and_packages():
    with pytest.raises(NeedsContainerBuilder) as refused:
        plan_conda(PACKAGES, (), pypi_fallback=False)
    assert str(refused.value).startswith(
        "environment.yml lists conda packages: 'numpy=1.26' (line 5), 'pytorch>=2' (line 6); "
        "this site has no conda channel for venv builds (builder.conda_channels)"
    )


def test_the_fallback_refuses_what_pypi_does_not_have():
    with pytest.raises(BuildFailed, match="^environment.yml line 3: 'nodejs' is a conda package"):
        plan_conda((CondaPackage("nodejs", 3),), (), pypi_fallback=True)


def test_the_install_step_is_an_argv_of_kioskhubs_python(tmp_path):
    argv = install_command(
        tmp_path / "venv", "3.11.2", ("file:///a", "https://b"), tmp_path / "c", ("x>=1", "--y")
    )
    assert argv == [
        sys.executable,
        "-m",
        "kioskhub.image_builder.conda_environment",
        "--prefix",
        str(tmp_path / "venv"),
        "--python",
        "3.11.2",
        "--cache",
        str(tmp_path / "c"),
        "--channel",
        "file:///a",
        "--channel",
        "https://b",
        "--",
        "x>=1",
        "--y",
    ]


def test_a_failed_solve_names_the_line_of_the_missing_package():
    output = (
        f"resolving\n{UNSOLVABLE}Cannot solve the request because of: "
        "No candidates were found for nosuchpkg *.\n"
    )
    packages = (CondaPackage("beamcalc", 4), CondaPackage("nosuchpkg>=1", 7))
    assert str(solver_failure(output, packages)).startswith(
        "environment.yml line 7: 'nosuchpkg>=1' cannot be found in the site's conda channels;"
    )


def test_a_conflict_names_every_package_in_it():
    output = (
        f"{UNSOLVABLE}Cannot solve the request because of: The following packages are "
        "incompatible ├─ beamcalc >=2 cannot be installed because there are no viable options: "
        "└─ beamcalc 2.0 would require └─ beam-data <0.2 ├─ beam-data >=0.3 can be installed"
    )
    packages = (CondaPackage("beamcalc>=2", 4), CondaPackage("beam-data>=0.3", 5))
    assert str(solver_failure(output, packages)).startswith(
        "environment.yml lines 4, 5: 'beamcalc>=2', 'beam-data>=0.3' cannot be installed together"
    )


def test_solver_messages_quote_no_odd_entry(tmp_path: Path):
    output = f"{UNSOLVABLE}No candidates were found for token *."
    message = str(solver_failure(output, (CondaPackage("token=$(cat /etc/shadow)", 2),)))
    assert "shadow" not in message and "(an entry not shown)" in message


def test_channel_prefixes_are_dropped_and_urls_refused():
    plan = plan_conda(
        (CondaPackage("conda-forge::numpy>=1.26", 3), CondaPackage("scipy 1.11.* py311_0", 4)),
        ("file:///srv/conda",),
        pypi_fallback=False,
    )
    assert plan.conda_specs == ("numpy>=1.26", "scipy 1.11.* py311_0")
    for spec in (
        "https://evil.example.org/noarch/x-1.0-0.conda",
        "file:///srv/other::x",
        "/srv/other/noarch/x-1.0-0.tar.bz2",
        "x[channel=https://evil.example.org]",
    ):
        with pytest.raises(BuildFailed, match="^environment.yml line 9: .* not a conda package"):
            plan_conda((CondaPackage(spec, 9),), ("file:///srv/conda",), pypi_fallback=False)
