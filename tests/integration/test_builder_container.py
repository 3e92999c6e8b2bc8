"""The container builder's edges that run anywhere: the engine check and the Dockerfile."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.builder_base import BuildFailed, BuildRequest
from kioskhub.image_builder.container_builder import ContainerBuilder, ContainerEngine, find_engine
from kioskhub.image_builder.source_safety import check_repository_url

pytestmark = pytest.mark.integration
KIOSKHUB = str(Path(sys.executable).parent / "kioskhub")


def make_repo(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    (repo / "requirements.txt").write_text("tomli-w\n")
    (repo / "postBuild").write_text("#!/bin/bash\necho built > ~/built.txt\n")
    (repo / "apt.txt").write_text("libgl1\n")
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "spec"]):
        subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=A", "-c", "user.email=a@b", *args], check=True
        )
    return repo


def test_the_engine_check_says_one_line():
    out = subprocess.run([KIOSKHUB, "env", "engine"], capture_output=True, text=True, check=True)
    engine = find_engine()
    assert out.stdout.count("\n") == 1
    assert out.stdout.startswith("container builds: ")
    assert (engine.name in out.stdout) if engine.available else (engine.reason in out.stdout)


def test_dockerfile_with_or_without_an_engine(tmp_path):
    repo = make_repo(tmp_path)
    out = subprocess.run(
        [KIOSKHUB, "env", "dockerfile", str(repo)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.lstrip().startswith("FROM ")
    assert "requirements.txt" in out.stdout and "./postBuild" in out.stdout
    assert "apt-get" in out.stdout
    assert out.stderr.startswith("# container engine: ")


def test_a_container_build_without_an_engine_fails_with_the_reason(tmp_path):
    builder = ContainerBuilder(ContainerEngine(None, reason="no container engine here"))
    source = check_repository_url(
        str(make_repo(tmp_path)), allowed_schemes=(), allowed_hosts=(), allow_local_paths=True
    )
    with pytest.raises(BuildFailed, match="not possible here: no container engine here"):
        asyncio.run(builder.build(BuildRequest(1, "ada", "x", source), BuildLog()))
