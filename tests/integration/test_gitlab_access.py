"""KioskHub's GitLab account acts for a hub user only on projects anyone may read.

Attack: KioskHub's bot is a member of a private project in an allowed namespace; a hub user
who is not registers it. Before, the bot started its pipeline and copied the job logs into
the user's build log. Now registration is refused with the reason, a build of a project
made private since is refused before any pipeline starts, and job logs are copied only where
GitLab shows them to anyone (public project, public jobs). Driven through python-gitlab
against the GitLab API simulation.
"""

from __future__ import annotations

import asyncio

import pytest

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.build_runner import check_source
from kioskhub.image_builder.builder_base import BuildFailed, BuildRequest
from kioskhub.image_builder.git_credentials import GITLAB_TOKEN_USER, GitCredentials
from kioskhub.image_builder.gitlab_builder import GitLabCIBuilder
from kioskhub.image_builder.gitlab_connection import GitLabConnection
from kioskhub.image_builder.gitlab_pipelines import FollowTimings, GitLabCIBuilds
from tests.gitlab_sim import GitLabSimulation

pytestmark = pytest.mark.integration

TIMINGS = FollowTimings(initial=0.05, maximum=0.2, maximum_while_running=0.2, timeout=20)
SETTINGS = BuilderSettings(allowed_schemes=("http",), allowed_hosts=("localhost",))
TRACE_LINE = "kernel executed 1+1 = 2"


@pytest.fixture
def gitlab():
    with GitLabSimulation() as simulation:
        simulation.url = simulation.url.replace("127.0.0.1", "localhost")
        simulation.bot, simulation.bot_token = simulation.model.add_user("kioskhub-bot")
        yield simulation


def project(gitlab, path: str, visibility: str, public_jobs: bool = True):
    made = gitlab.model.add_project(path, members={gitlab.bot: "developer"}, visibility=visibility)
    made.public_jobs = public_jobs
    return made


def builder(gitlab) -> GitLabCIBuilder:
    connection = GitLabConnection(gitlab.url, gitlab.bot_token)
    return GitLabCIBuilder(GitLabCIBuilds(connection, allowed_namespaces=("lab",), timings=TIMINGS))


def source(gitlab, path: str):
    return check_source(SETTINGS, f"{gitlab.url}/{path}.git")


def build(gitlab, path: str) -> tuple[BuildLog, BaseException | None]:
    log = BuildLog()
    request = BuildRequest(build_id=1, owner="ada", name="env", source=source(gitlab, path))

    async def scenario():
        try:
            await builder(gitlab).build(request, log)
        except BuildFailed as error:
            return error
        return None

    return log, asyncio.run(scenario())


def test_registering_a_private_project_is_refused_with_the_reason(gitlab):
    project(gitlab, "lab/secret", "private")

    with pytest.raises(BuildFailed) as refused:
        asyncio.run(builder(gitlab).check_registration(source(gitlab, "lab/secret")))

    assert str(refused.value).startswith(
        "the GitLab project lab/secret is private: KioskHub builds only projects that every "
        "user may read (public or internal)"
    )
    assert gitlab.model.pipelines == {}


@pytest.mark.parametrize("visibility", ["public", "internal"])
def test_projects_anyone_may_read_may_be_registered(gitlab, visibility):
    project(gitlab, "lab/open", visibility)

    asyncio.run(builder(gitlab).check_registration(source(gitlab, "lab/open")))


def test_a_project_made_private_after_registration_is_not_built(gitlab):
    registered = project(gitlab, "lab/was-public", "public")
    asyncio.run(builder(gitlab).check_registration(source(gitlab, "lab/was-public")))
    registered.visibility = "private"

    log, error = build(gitlab, "lab/was-public")

    assert "is private: KioskHub builds only projects" in str(error)
    assert gitlab.model.pipelines == {}, "a pipeline ran for a user who may not read it"


def test_job_logs_of_a_public_project_are_copied(gitlab):
    project(gitlab, "lab/open", "public")

    log, error = build(gitlab, "lab/open")

    assert error is None, log.text()
    assert TRACE_LINE in log.text()


@pytest.mark.parametrize(("visibility", "public_jobs"), [("internal", True), ("public", False)])
def test_job_logs_gitlab_hides_are_not_copied(gitlab, visibility, public_jobs):
    project(gitlab, "lab/closed-logs", visibility, public_jobs)

    log, error = build(gitlab, "lab/closed-logs")

    assert error is None, log.text()
    assert TRACE_LINE not in log.text()
    assert "The job logs are not copied here: GitLab shows them only to members of" in (log.text())


def test_a_private_project_is_built_for_a_user_whose_own_token_reads_it(gitlab):
    """The service checked the user's access with their token (user_gitlab_credentials) and
    hands it on: the bot's rule for users without a token no longer applies."""
    project(gitlab, "lab/secret", "private")
    credentials = GitCredentials(GITLAB_TOKEN_USER, "a token the service checked")
    request = BuildRequest(
        build_id=1,
        owner="ada",
        name="env",
        source=source(gitlab, "lab/secret"),
        credentials=credentials,
    )

    async def scenario():
        ci = builder(gitlab)
        await ci.check_registration(request.source, credentials)
        return await ci.build(request, BuildLog())

    artifact = asyncio.run(scenario())

    [pipeline] = gitlab.model.pipelines.values()
    assert artifact.commit_sha == pipeline.sha and artifact.image_digest.startswith("sha256:")
