"""The gitlab-ci builder inside the catalog's BuildRunner: a registered environment is built by
the project's GitLab CI (simulated) and the catalog records the image, its digest, the commit,
the pipeline and the log; failures keep the log and the ready image; a restarted service
follows the pipeline it had started; cancelling a build cancels its pipeline."""

from __future__ import annotations

import asyncio

import pytest

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.build_runner import BuildRunner, check_source
from kioskhub.image_builder.builder_base import BuildFailed, BuildRequest
from kioskhub.image_builder.catalog import BuildRecord, EnvironmentRecord
from kioskhub.image_builder.catalog_db import open_catalog
from kioskhub.image_builder.catalog_store import builder_state, queue_build, register
from kioskhub.image_builder.gitlab_builder import CatalogPipelineMemory, GitLabCIBuilder
from kioskhub.image_builder.gitlab_connection import GitLabConnection
from kioskhub.image_builder.gitlab_pipeline_variables import pipeline_request
from kioskhub.image_builder.gitlab_pipelines import FollowTimings, GitLabCIBuilds
from tests.gitlab_sim import GitLabSimulation

pytestmark = pytest.mark.integration

TIMINGS = FollowTimings(initial=0.05, maximum=0.2, maximum_while_running=0.2, timeout=20)
SETTINGS = BuilderSettings(allowed_schemes=("http",), allowed_hosts=("localhost",))


@pytest.fixture
def gitlab():
    with GitLabSimulation() as simulation:
        simulation.url = simulation.url.replace("127.0.0.1", "localhost")
        simulation.bot, simulation.bot_token = simulation.model.add_user("kioskhub-bot")
        simulation.project = simulation.model.add_project(
            "lab/analysis", members={simulation.bot: "developer"}, visibility="public"
        )
        yield simulation


@pytest.fixture
def catalog(tmp_path):
    opened = open_catalog(f"sqlite:///{tmp_path / 'environments.sqlite'}")
    yield opened
    opened.close()


HOOK = ("https://kioskhub.example.org/services/environments/webhooks/gitlab", "s" * 24)


def make_builder(gitlab, catalog, webhook=None) -> GitLabCIBuilder:
    connection = GitLabConnection(gitlab.url, gitlab.bot_token)
    builds = GitLabCIBuilds(connection, allowed_namespaces=("lab",), timings=TIMINGS)
    return GitLabCIBuilder(builds, memory=CatalogPipelineMemory(catalog), webhook=webhook)


def register_environment(gitlab, catalog, subdir="envs/py") -> int:
    with catalog.session() as session:
        _, build = register(
            session,
            owner="ada",
            name="analysis",
            repo_url=f"{gitlab.url}/lab/analysis.git",
            ref="HEAD",
            subdir=subdir,
            builder="gitlab-ci",
        )
        return build.id


async def run_build(runner: BuildRunner, build_id: int) -> BuildLog:
    log = runner.submit(build_id)
    while not log.finished:
        await log.wait(len(log.lines), timeout=1)
    await asyncio.sleep(0.05)
    return log


def test_a_catalog_build_runs_in_gitlab_ci_and_records_the_image(gitlab, catalog):
    build_id = register_environment(gitlab, catalog)

    async def scenario():
        builder = make_builder(gitlab, catalog, webhook=HOOK)
        runner = BuildRunner(catalog, SETTINGS, {"gitlab-ci": builder})
        try:
            return await run_build(runner, build_id)
        finally:
            await runner.close()

    log = asyncio.run(scenario())

    [pipeline] = gitlab.pipelines_of(gitlab.project)
    tag = next(iter(gitlab.model.repositories.values())).tags[pipeline.sha]
    assert pipeline.ref == "main", "HEAD builds the project's default branch"
    assert pipeline.variables["KIOSKHUB_SUBDIR"] == "envs/py"
    with catalog.session() as session:
        build = session.get(BuildRecord, build_id)
        environment = build.environment
        assert (build.status, environment.status) == ("ready", "ready")
        assert (
            environment.image_ref
            == f"registry.gitlab.test/lab/analysis/kioskhub-env:{pipeline.sha}"
        )
        assert environment.image_digest == tag.digest == build.image_digest
        assert environment.commit_sha == pipeline.sha
        assert build.external_id == f"{gitlab.project.id}/{pipeline.id}"
        assert build.external_url.endswith(f"/lab/analysis/-/pipelines/{pipeline.id}")
        assert builder_state(build)["gitlab"]["pipeline_id"] == pipeline.id
        assert "kernel executed 1+1 = 2" in build.log
        assert f"Digest {tag.digest}" in build.log
    assert "Building with repo2docker in GitLab CI" in log.text()
    assert "may not add webhooks to this project" in log.text()
    assert gitlab.project.hooks == []


def test_a_failed_rebuild_keeps_its_log_and_the_ready_image(gitlab, catalog):
    gitlab.project.members[gitlab.bot.id] = 40
    build_id = register_environment(gitlab, catalog)

    async def scenario():
        builder = make_builder(gitlab, catalog, webhook=HOOK)
        runner = BuildRunner(catalog, SETTINGS, {"gitlab-ci": builder})
        try:
            await run_build(runner, build_id)
            gitlab.project.build_outcome = "failed"
            with catalog.session() as session:
                rebuild = queue_build(session, session.get(BuildRecord, build_id).environment)
                rebuild_id = rebuild.id
            await run_build(runner, rebuild_id)
            return rebuild_id
        finally:
            await runner.close()

    rebuild_id = asyncio.run(scenario())

    first, second = gitlab.pipelines_of(gitlab.project)
    with catalog.session() as session:
        rebuild = session.get(BuildRecord, rebuild_id)
        environment = session.get(EnvironmentRecord, rebuild.environment_id)
        assert (rebuild.status, environment.status) == ("failed", "failed")
        assert "the pipeline failed" in rebuild.error
        assert "No matching distribution found for no-such-package" in rebuild.log
        assert environment.image_ref.endswith(f":{first.sha}") and environment.launchable
        assert second.status == "failed"
    [hook] = gitlab.project.hooks
    assert (hook.url, hook.token) == HOOK and hook.pipeline_events and hook.job_events


def test_a_restarted_service_follows_the_pipeline_it_had_started(gitlab, catalog):
    build_id = register_environment(gitlab, catalog)
    builder = make_builder(gitlab, catalog)

    async def scenario():
        project = await builder.builds.register_project("lab/analysis")
        request = pipeline_request(
            "lab/analysis", "main", "", gitlab_url=gitlab.url, allowed_namespaces=("lab",)
        )
        run = await builder.builds.trigger(project, request)
        builder.memory.remember(build_id, run)
        build_request = BuildRequest(
            build_id=build_id,
            owner="ada",
            name="analysis",
            source=check_source(SETTINGS, f"{gitlab.url}/lab/analysis.git"),
            ref="main",
        )
        return run, await builder.build(build_request, BuildLog())

    run, artifact = asyncio.run(scenario())

    assert [p.id for p in gitlab.pipelines_of(gitlab.project)] == [run.pipeline_id]
    assert artifact.commit_sha == run.sha and artifact.image_digest.startswith("sha256:")


def test_cancelling_a_build_cancels_its_pipeline(gitlab, catalog):
    gitlab.project.autorun = False
    build_id = register_environment(gitlab, catalog)

    async def scenario():
        runner = BuildRunner(catalog, SETTINGS, {"gitlab-ci": make_builder(gitlab, catalog)})
        try:
            log = runner.submit(build_id)
            while not gitlab.pipelines_of(gitlab.project):
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            assert runner.cancel(build_id)
            while not log.finished:
                await log.wait(len(log.lines), timeout=1)
            await asyncio.sleep(0.05)
            return log
        finally:
            await runner.close()

    log = asyncio.run(scenario())

    [pipeline] = gitlab.pipelines_of(gitlab.project)
    assert pipeline.status == "canceled"
    assert "Cancelled pipeline" in log.text()
    with catalog.session() as session:
        assert session.get(BuildRecord, build_id).status == "failed"


def test_a_site_that_requires_trigger_tokens_refuses_a_build_without_one(gitlab, catalog):
    builder = make_builder(gitlab, catalog)
    builder.require_trigger_token = True
    request = BuildRequest(
        build_id=register_environment(gitlab, catalog),
        owner="ada",
        name="analysis",
        source=check_source(SETTINGS, f"{gitlab.url}/lab/analysis.git"),
    )

    with pytest.raises(BuildFailed, match="Pipeline trigger tokens"):
        asyncio.run(builder.build(request, BuildLog()))
    assert gitlab.pipelines_of(gitlab.project) == []
