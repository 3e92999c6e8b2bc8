"""The environment builder's metrics, through the catalog's BuildRunner and tiny builders
that succeed, fail or hang (the queue's timeout stops them)."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder import build_metrics
from kioskhub.image_builder.build_runner import BuildRunner
from kioskhub.image_builder.builder_base import Artifact, BuildFailed, EnvironmentBuilder
from kioskhub.image_builder.catalog_db import open_catalog
from kioskhub.image_builder.catalog_store import register

SETTINGS = BuilderSettings(allowed_schemes=("https",), allowed_hosts=("git.example.org",))


class Builds(EnvironmentBuilder):
    async def build(self, request, log):
        return Artifact(commit_sha="a" * 40, venv_path="/nowhere")


class FailsToBuild(EnvironmentBuilder):
    async def build(self, request, log):
        raise BuildFailed("requirements.txt names a package that does not exist")


class Hangs(EnvironmentBuilder):
    async def build(self, request, log):
        await asyncio.sleep(60)


def ended(builder: str, result: str) -> float:
    labels = {"builder": builder, "result": result}
    return REGISTRY.get_sample_value("kioskhub_environment_builds_total", labels) or 0.0


def build_with(tmp_path, builder: EnvironmentBuilder, timeout: float = 30) -> float:
    """Run one build of a registered environment; the queue length seen while it ran."""
    catalog = open_catalog(f"sqlite:///{tmp_path / 'environments.sqlite'}")
    settings = SETTINGS.model_copy(update={"build_timeout": timeout})
    with catalog.session() as session:
        _, build = register(
            session,
            owner="ada",
            name="analysis",
            repo_url="https://git.example.org/a.git",
            ref="HEAD",
            subdir="",
            builder="local",
        )
        build_id = build.id

    async def scenario():
        runner = BuildRunner(catalog, settings, {"local": builder})
        log = runner.submit(build_id)
        queued = REGISTRY.get_sample_value("kioskhub_environment_builds_queued")
        while not log.finished:
            await log.wait(len(log.lines), timeout=1)
        await runner.close()
        return queued

    try:
        return asyncio.run(scenario())
    finally:
        catalog.close()


@pytest.mark.parametrize(
    ("builder", "result", "timeout"),
    [(Builds(), "ready", 30), (FailsToBuild(), "failed", 30), (Hangs(), "stopped", 0.2)],
)
def test_each_ended_build_is_counted_once_by_builder_and_result(tmp_path, builder, result, timeout):
    before = ended("local", result)

    queued = build_with(tmp_path, builder, timeout)

    assert ended("local", result) == before + 1
    assert queued == 1
    assert REGISTRY.get_sample_value("kioskhub_environment_builds_queued") == 0


def test_a_build_result_takes_only_its_fixed_values():
    with pytest.raises(ValueError, match="unknown build result"):
        build_metrics.record_build("local", "requirements.txt is broken", 1.0)
