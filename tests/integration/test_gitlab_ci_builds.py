"""The GitLab CI path end to end, against the GitLab simulation through python-gitlab.

register → trigger (validated variables) → follow (webhook receiver with a secret token,
polling with backoff when no webhook comes) → the job log streamed as it grows → the pushed
image and its digest read from the registry API.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import requests

from kioskhub.hub.schema.gitlab import CI_TEMPLATE
from kioskhub.image_builder.gitlab_connection import (
    GitLabConnection,
    GitLabForbidden,
    GitLabNotFound,
)
from kioskhub.image_builder.gitlab_pipeline_variables import PipelineInputError, pipeline_request
from kioskhub.image_builder.gitlab_pipelines import (
    FollowTimings,
    GitLabCIBuilds,
    LogAppended,
    PipelineFinished,
    PipelineStatusChanged,
)
from kioskhub.image_builder.gitlab_webhook import PipelineEventBus
from tests.gitlab_sim import GitLabSimulation
from tests.gitlab_sim.receiver import start_webhook_receiver, template_url

pytestmark = pytest.mark.integration

SECRET = "webhook-secret-0123456789abcdef"
NAMESPACES = ("lab",)
QUICK_POLLS = FollowTimings(initial=0.05, maximum=0.2, maximum_while_running=0.2, timeout=20)
WEBHOOKS_ONLY = FollowTimings(initial=30, maximum=30, maximum_while_running=30, timeout=25)


@pytest.fixture
def gitlab():
    """A simulated GitLab with KioskHub's bot account and a scientist's project."""
    with GitLabSimulation(step_interval=0.05) as simulation:
        simulation.bot, simulation.bot_token = simulation.model.add_user("kioskhub-bot")
        simulation.ada, _ = simulation.model.add_user("ada")
        simulation.project = simulation.model.add_project(
            "lab/analysis",
            members={simulation.bot: "maintainer", simulation.ada: "owner"},
            branches=("main", "v1.0"),
        )
        yield simulation


def builds_for(gitlab, *, events=None, timings=QUICK_POLLS) -> GitLabCIBuilds:
    connection = GitLabConnection(gitlab.url, gitlab.bot_token)
    return GitLabCIBuilds(connection, allowed_namespaces=NAMESPACES, events=events, timings=timings)


def checked(gitlab, project="lab/analysis", ref="main", subdir="envs/py", builder=""):
    return pipeline_request(
        project, ref, subdir, gitlab_url=gitlab.url, allowed_namespaces=NAMESPACES,
        builder=builder,
    )


async def collect(builds, run):
    updates = []
    async for update in builds.follow(run):
        updates.append(update)
    return updates


def test_register_trigger_webhook_log_and_image_end_to_end(gitlab):
    async def scenario():
        events = PipelineEventBus()
        server, hook_url = await start_webhook_receiver(SECRET, events)
        try:
            builds = builds_for(gitlab, events=events, timings=WEBHOOKS_ONLY)
            project = await builds.register_project(f"{gitlab.url}/lab/analysis.git")
            assert await builds.ensure_webhook(project, hook_url, SECRET)
            assert await builds.ensure_webhook(project, hook_url, SECRET), "idempotent"
            run = await builds.trigger(project, checked(gitlab))
            started = time.monotonic()
            updates = await collect(builds, run)
            return project, run, updates, time.monotonic() - started, events
        finally:
            server.stop()

    project, run, updates, elapsed, events = asyncio.run(scenario())

    assert project.path_with_namespace == "lab/analysis" and project.id == gitlab.project.id
    pipeline = gitlab.model.pipelines[run.pipeline_id]
    assert pipeline.variables == {
        "KIOSKHUB_BUILD": "1",
        "KIOSKHUB_REF": "main",
        "KIOSKHUB_SUBDIR": "envs/py",
    }
    assert len(gitlab.project.hooks) == 1
    # Polls were 30 s apart: only the webhooks can have made it this quick.
    assert elapsed < 10
    assert events.received >= 4
    assert {d.response_code for d in gitlab.deliveries} == {200}
    statuses = [u.status for u in updates if isinstance(u, PipelineStatusChanged)]
    assert statuses[0] in ("pending", "running") and statuses[-1] == "success"
    outcome = updates[-1].outcome
    assert isinstance(updates[-1], PipelineFinished) and outcome.succeeded
    job = pipeline.jobs[0]
    streamed = "".join(u.text for u in updates if isinstance(u, LogAppended))
    assert streamed == outcome.log == f"── job kioskhub-env (build) ──\n{job.trace}"
    assert f"KioskHub builds main ({pipeline.sha}) from 'envs/py'" in outcome.log
    assert "kernel executed 1+1 = 2" in outcome.log
    tag = gitlab.model.repositories[min(gitlab.model.repositories)].tags[pipeline.sha]
    assert outcome.image.ref == f"registry.gitlab.test/lab/analysis/kioskhub-env:{pipeline.sha}"
    assert outcome.image.digest == tag.digest and tag.digest.startswith("sha256:")
    assert outcome.run.sha == pipeline.sha and outcome.run.status == "success"


def test_polling_with_backoff_follows_a_pipeline_without_webhooks(gitlab):
    gitlab.project.build_steps = 5

    async def scenario():
        builds = builds_for(gitlab)
        project = await builds.register_project("lab/analysis")
        run = await builds.trigger(project, checked(gitlab, subdir=""))
        return await collect(builds, run)

    updates = asyncio.run(scenario())

    chunks = [u.text for u in updates if isinstance(u, LogAppended)]
    assert len(chunks) >= 3, "the log arrives piece by piece while the job runs"
    outcome = updates[-1].outcome
    assert outcome.succeeded and outcome.log == "".join(chunks)
    assert gitlab.deliveries == []
    trace_reads = [r for r in gitlab.requests if r[1].endswith("/trace")]
    assert len(trace_reads) >= len(chunks)


def test_a_failed_pipeline_keeps_its_log_and_records_no_image(gitlab):
    gitlab.project.build_outcome = "failed"

    async def scenario():
        builds = builds_for(gitlab)
        return await builds.build(await builds.register_project("lab/analysis"), checked(gitlab))

    outcome = asyncio.run(scenario())

    assert not outcome.succeeded and outcome.pipeline_status == "failed"
    assert outcome.image is None
    assert "No matching distribution found for no-such-package" in outcome.log
    assert "ERROR: Job failed: exit code 1" in outcome.log
    assert outcome.error == f"the pipeline failed: {outcome.run.web_url}"
    assert gitlab.model.repositories == {}


def test_a_pipeline_that_pushes_no_image_is_not_a_success(gitlab):
    gitlab.project.pushes_image = False

    async def scenario():
        builds = builds_for(gitlab)
        return await builds.build(await builds.register_project("lab/analysis"), checked(gitlab))

    outcome = asyncio.run(scenario())

    assert outcome.pipeline_status == "success" and not outcome.succeeded
    assert "pushed no kioskhub-env:" in outcome.error
    assert "include KioskHub's CI template" in outcome.error


def test_webhooks_with_a_wrong_token_get_401_and_polling_still_finishes(gitlab):
    async def scenario():
        events = PipelineEventBus()
        server, hook_url = await start_webhook_receiver(SECRET, events)
        try:
            gitlab.model.add_hook(gitlab.project, hook_url, token="not-the-secret")
            builds = builds_for(gitlab, events=events)
            outcome = await builds.build(
                await builds.register_project("lab/analysis"), checked(gitlab)
            )
            await gitlab.await_deliveries(6)
            received_from_gitlab = events.received
            answers = await asyncio.to_thread(_direct_requests, hook_url)
            return outcome, received_from_gitlab, answers
        finally:
            server.stop()

    outcome, received_from_gitlab, answers = asyncio.run(scenario())

    assert outcome.succeeded
    assert gitlab.deliveries and {d.response_code for d in gitlab.deliveries} == {401}
    assert received_from_gitlab == 0
    assert answers == {
        "no token": (401, {"message": "401 Unauthorized"}),
        "wrong token": (401, {"message": "401 Unauthorized"}),
        "right token, not JSON": (400, None),
        "right token, push event": (200, {"status": "ignored"}),
        "right token, pipeline event": (200, {"status": "accepted", "followers": 0}),
    }


def _direct_requests(url: str) -> dict:
    pipeline = {
        "object_kind": "pipeline",
        "object_attributes": {"id": 1, "status": "running"},
        "project": {"id": 1},
    }
    cases = {
        "no token": ({"X-Gitlab-Event": "Pipeline Hook"}, pipeline),
        "wrong token": (
            {"X-Gitlab-Token": SECRET[:-1], "X-Gitlab-Event": "Pipeline Hook"},
            pipeline,
        ),
        "right token, not JSON": (
            {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Pipeline Hook"},
            None,
        ),
        "right token, push event": ({"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"}, {}),
        "right token, pipeline event": (
            {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Pipeline Hook"},
            pipeline,
        ),
    }
    answers = {}
    for name, (headers, body) in cases.items():
        if body is None:
            response = requests.post(url, headers=headers, data=b"{not json", timeout=5)
            answers[name] = (response.status_code, None)
        else:
            response = requests.post(url, headers=headers, json=body, timeout=5)
            answers[name] = (response.status_code, response.json())
    return answers


def test_a_trigger_token_starts_pipelines_for_an_account_with_only_the_reporter_role(gitlab):
    gitlab.project.members[gitlab.bot.id] = 20
    trigger_token = gitlab.model.add_trigger_token(gitlab.project, gitlab.ada)

    async def scenario():
        builds = builds_for(gitlab)
        project = await builds.register_project("lab/analysis")
        with pytest.raises(GitLabForbidden, match="403 Forbidden"):
            await builds.trigger(project, checked(gitlab, ref="v1.0"))
        return await builds.build(
            project, checked(gitlab, ref="v1.0", builder="kioskhub"), trigger_token=trigger_token
        )

    outcome = asyncio.run(scenario())

    pipeline = gitlab.model.pipelines[outcome.run.pipeline_id]
    assert outcome.succeeded and pipeline.source == "trigger" and pipeline.ref == "v1.0"
    assert pipeline.user is gitlab.ada
    assert pipeline.variables["KIOSKHUB_REF"] == "v1.0"
    assert pipeline.variables["KIOSKHUB_BUILDER"] == "kioskhub", "the site's gitlab.ci_builder"


def test_registration_refuses_what_the_site_may_not_build(gitlab):
    gitlab.model.add_project("other/tool", visibility="public")
    gitlab.model.add_project("lab/private-of-someone")

    async def scenario():
        builds = builds_for(gitlab)
        before = len(gitlab.requests)
        with pytest.raises(PipelineInputError, match="outside the GitLab namespaces"):
            await builds.register_project("other/tool")
        with pytest.raises(PipelineInputError, match="not this site's GitLab"):
            await builds.register_project("https://evil.example.com/lab/analysis")
        assert len(gitlab.requests) == before, "refused before any request to GitLab"
        with pytest.raises(GitLabNotFound, match="no GitLab project 'lab/missing'"):
            await builds.register_project("lab/missing")
        with pytest.raises(GitLabNotFound, match="member of the project"):
            await builds.register_project("lab/private-of-someone")
        project = await builds.register_project("lab/analysis")
        with pytest.raises(PipelineInputError, match="not for the registered project"):
            await builds.trigger(project, checked(gitlab, project="lab/other"))

    asyncio.run(scenario())


def test_without_the_maintainer_role_the_webhook_is_left_to_the_projects_maintainers(gitlab):
    gitlab.project.members[gitlab.bot.id] = 30

    async def scenario():
        builds = builds_for(gitlab)
        project = await builds.register_project("lab/analysis")
        return await builds.ensure_webhook(project, "https://kioskhub.example.org/hook", SECRET)

    assert asyncio.run(scenario()) is False
    assert gitlab.project.hooks == []


def test_the_service_serves_the_ci_template_to_include_without_sign_in():
    async def scenario():
        server, hook_url = await start_webhook_receiver(SECRET, PipelineEventBus())
        try:
            return await asyncio.to_thread(requests.get, template_url(hook_url), timeout=5)
        finally:
            server.stop()

    answer = asyncio.run(scenario())

    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/yaml")
    assert answer.text == CI_TEMPLATE.read_text(encoding="utf-8")
