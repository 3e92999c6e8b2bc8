"""Hostile repository contents: the spec reader refuses each one by name, quoting nothing.

Every row is a checkout that tries to make the builder (root) read or echo something that is
not the repository's: links to /proc/self/environ, /etc/shadow and out of the checkout,
FIFOs, devices, huge files, names with newlines or shell characters. Each must end in a
BuildFailed whose message names the file and says what to do, with no traceback and nothing
of the linked file in it; plain names that merely look odd are data and build as usual.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.builder_base import BuildFailed
from kioskhub.image_builder.checkout_files import MAX_SPEC_BYTES
from kioskhub.image_builder.conda_environment import plan_conda
from kioskhub.image_builder.repo_spec import detect_spec, parse_runtime

SECRET = "kioskhub-secret-token-0123456789"


def link(target: str):
    return lambda path: path.symlink_to(target)


def fifo(path: Path) -> None:
    os.mkfifo(path)


def device(path: Path) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 5))  # /dev/zero's numbers; needs root


def huge(path: Path) -> None:
    with open(path, "wb") as handle:
        handle.truncate(MAX_SPEC_BYTES + 1)


HOSTILE = {
    "runtime.txt → /proc/self/environ": ("runtime.txt", link("/proc/self/environ"), "outside"),
    "requirements.txt → /etc/shadow": ("requirements.txt", link("/etc/shadow"), "outside"),
    "runtime.txt → ../../secret (relative)": ("runtime.txt", link("../../secret"), "outside"),
    "runtime.txt → binder/../../secret": (
        "runtime.txt",
        link("binder-x/../../secret"),
        "outside",
    ),
    "environment.yml → the secret's absolute path": ("environment.yml", "ABSOLUTE", "outside"),
    "postBuild is a FIFO": ("postBuild", fifo, "not a regular file"),
    "runtime.txt is a character device": ("runtime.txt", device, "not a regular file"),
    "setup.py → /dev/zero": ("setup.py", link("/dev/zero"), "outside"),
    "requirements.txt is huge": ("requirements.txt", huge, "larger than"),
    "requirements.txt is a folder": ("requirements.txt", lambda p: p.mkdir(), "folder"),
    "a link loop": ("runtime.txt", link("runtime.txt"), "outside"),
}


@pytest.fixture
def outside(tmp_path):
    """A secret beside the checkout, which no spec may read, and the checkout itself."""
    (tmp_path / "secret").write_text(f"python-3.11\n{SECRET}\n")
    checkout = tmp_path / "work" / "repo"
    checkout.mkdir(parents=True)
    (checkout / "binder-x").mkdir()
    return checkout


@pytest.mark.parametrize("name, plant, message", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_spec_files_are_refused_by_name(outside, name, plant, message, monkeypatch):
    monkeypatch.setenv("KIOSKHUB_SERVICE_TOKEN", SECRET)
    if plant == "ABSOLUTE":
        plant = link(str(outside.parent.parent / "secret"))
    plant(outside / name)
    with pytest.raises(BuildFailed) as refused:
        detect_spec(outside)
    text = str(refused.value)
    assert text.startswith(name), text
    assert message in text
    assert SECRET not in text and "Traceback" not in text
    assert (outside.parent.parent / "secret").read_text().endswith(f"{SECRET}\n")


def test_a_link_inside_the_checkout_is_data(outside):
    (outside / "specs").mkdir()
    (outside / "specs" / "requirements.txt").write_text("tomli-w\n")
    (outside / "requirements.txt").symlink_to("binder-x/../specs/requirements.txt")
    spec = detect_spec(outside)
    assert spec.files["requirements.txt"] == b"tomli-w\n"


@pytest.mark.parametrize(
    "name", ["a\nb.txt", "$(touch pwned)", "; rm -rf ~", "`id`", "--help", "ünï cödé"]
)
def test_odd_names_are_only_data(outside, name):
    (outside / name).write_text("odd\n")
    (outside / "requirements.txt").symlink_to(name)
    spec = detect_spec(outside)
    assert spec.files["requirements.txt"] == b"odd\n"
    assert not (outside / "pwned").exists() and spec.uses_local_files is False


@pytest.mark.parametrize(
    "text",
    [f"{SECRET}\n", f"KIOSKHUB_SERVICE_TOKEN={SECRET}\n", "python-3.11; cat /etc/shadow\n"],
)
def test_a_bad_runtime_is_not_quoted(text):
    with pytest.raises(BuildFailed) as refused:
        parse_runtime(text)
    assert SECRET not in str(refused.value) and "shadow" not in str(refused.value)
    assert "write python-3.X" in str(refused.value)


def test_yaml_errors_and_conda_lists_quote_no_content(outside):
    (outside / "environment.yml").write_text(f"dependencies: [{SECRET}\n")
    with pytest.raises(BuildFailed, match="not valid YAML at line") as refused:
        detect_spec(outside)
    assert SECRET not in str(refused.value)
    (outside / "environment.yml").write_text(
        f"dependencies:\n  - numpy\n  - TOKEN={SECRET}\n  - pip:\n    - x\n"
    )
    spec = detect_spec(outside)
    with pytest.raises(BuildFailed, match="conda packages") as refused:
        plan_conda(spec.conda_packages, channels=(), pypi_fallback=False)
    assert "'numpy' (line 2)" in str(refused.value) and SECRET not in str(refused.value)


@pytest.mark.parametrize(
    "line", ["-r other.txt", "./local", "pkg @ ./x", "pkg @ file:///etc", "${HOME}/x", "~/x"]
)
def test_requirements_that_may_name_checkout_files_tie_the_venv_to_the_tree(outside, line):
    (outside / "requirements.txt").write_text(f"tomli-w\n{line}\n")
    assert detect_spec(outside).uses_local_files


def test_a_long_log_keeps_its_end_and_says_it_was_cut():
    log = BuildLog(max_bytes=10_000)
    for number in range(100_000):
        log.line(f"line {number:06d} " + "x" * 90)
    text = log.text()
    assert len(text.encode()) < 10_000 + 200
    assert text.startswith("[log cut: its first ")
    assert text.rstrip().endswith("line 099999 " + "x" * 90)
    assert len(log.lines) == 100_000
    assert log.lines[-1].startswith("line 099999") and log.lines[5:7] == []
    assert log.lines[99_999:] == [log.lines[-1]]
