"""The GitLab simulation answers as GitLab's v4 API documents, through the real python-gitlab
client (and raw HTTP where the headers and bodies themselves are the point)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import gitlab
import gitlab.exceptions
import pytest
import requests

from kioskhub.image_builder.gitlab_webhook import JobEvent, PipelineEvent, parse_event
from tests.gitlab_sim import GitLabSimulation

pytestmark = pytest.mark.integration


@pytest.fixture
def sim():
    with GitLabSimulation(step_interval=0.05) as simulation:
        yield simulation


def test_pagination_is_followed_across_pages(sim):
    _, token = sim.model.add_user("ada")
    for number in range(25):
        sim.model.add_project(f"lab/env-{number:02d}", visibility="public")
    client = gitlab.Gitlab(sim.url, private_token=token)

    listed = client.projects.list(per_page=10, iterator=True)
    paths = [project.path_with_namespace for project in listed]

    assert (listed.total, listed.total_pages, listed.per_page) == (25, 3, 10)
    assert sorted(paths) == [f"lab/env-{n:02d}" for n in range(25)]
    assert len(set(paths)) == 25
    pages = [query for method, path, query in sim.requests if path == "/api/v4/projects"]
    assert len(pages) == 3


def test_pagination_headers_and_link_follow_gitlab(sim):
    for number in range(25):
        sim.model.add_project(f"lab/env-{number:02d}", visibility="public")

    middle = requests.get(f"{sim.url}/api/v4/projects?per_page=10&page=2&search=env", timeout=5)
    last = requests.get(f"{sim.url}/api/v4/projects?per_page=10&page=3", timeout=5)

    assert {key: middle.headers[key] for key in ("X-Page", "X-Per-Page", "X-Total")} == {
        "X-Page": "2",
        "X-Per-Page": "10",
        "X-Total": "25",
    }
    assert (middle.headers["X-Total-Pages"], middle.headers["X-Next-Page"]) == ("3", "3")
    assert middle.headers["X-Prev-Page"] == "1"
    assert middle.links["next"]["url"] == (
        f"{sim.url}/api/v4/projects?per_page=10&page=3&search=env"
    )
    assert set(middle.links) == {"next", "prev", "first", "last"}
    assert len(middle.json()) == 10 and len(last.json()) == 5
    assert last.headers["X-Next-Page"] == "" and "next" not in last.links


def test_private_projects_are_visible_only_with_membership(sim):
    ada, ada_token = sim.model.add_user("ada")
    bob, bob_token = sim.model.add_user("bob")
    sim.model.add_project("lab/public-env", visibility="public", members={bob: "owner"})
    sim.model.add_project("lab/internal-env", visibility="internal", members={bob: "owner"})
    sim.model.add_project("lab/bob-private", members={bob: "owner"})
    sim.model.add_project("lab/ada-private", members={ada: "developer"})

    def paths(token=None, **filters):
        client = gitlab.Gitlab(sim.url, private_token=token)
        return sorted(p.path_with_namespace for p in client.projects.list(iterator=True, **filters))

    assert paths() == ["lab/public-env"]
    assert paths(ada_token) == ["lab/ada-private", "lab/internal-env", "lab/public-env"]
    assert paths(ada_token, membership=True) == ["lab/ada-private"]
    assert paths(bob_token, membership=True) == [
        "lab/bob-private",
        "lab/internal-env",
        "lab/public-env",
    ]
    with pytest.raises(gitlab.exceptions.GitlabGetError) as hidden:
        gitlab.Gitlab(sim.url, private_token=ada_token).projects.get("lab/bob-private")
    assert (hidden.value.response_code, hidden.value.error_message) == (
        404,
        "404 Project Not Found",
    )
    answer = requests.get(
        f"{sim.url}/api/v4/projects/lab%2Fbob-private", headers={"PRIVATE-TOKEN": ada_token}
    )
    assert (answer.status_code, answer.json()) == (404, {"message": "404 Project Not Found"})
    by_path = gitlab.Gitlab(sim.url, private_token=bob_token).projects.get("lab/bob-private")
    assert (
        gitlab.Gitlab(sim.url, private_token=bob_token).projects.get(by_path.id).path
        == "bob-private"
    )


def test_authentication_errors_have_gitlabs_bodies(sim):
    sim.model.add_project("lab/public-env", visibility="public")

    unknown = requests.get(
        f"{sim.url}/api/v4/projects/lab%2Fpublic-env", headers={"PRIVATE-TOKEN": "glpat-wrong"}
    )
    anonymous_user = requests.get(f"{sim.url}/api/v4/user")
    bearer = requests.get(f"{sim.url}/api/v4/user", headers={"Authorization": "Bearer nope"})

    assert (unknown.status_code, unknown.json()) == (401, {"message": "401 Unauthorized"})
    assert (anonymous_user.status_code, anonymous_user.json()) == (
        401,
        {"message": "401 Unauthorized"},
    )
    assert bearer.status_code == 401
    with pytest.raises(gitlab.exceptions.GitlabAuthenticationError):
        gitlab.Gitlab(sim.url, private_token="glpat-wrong").auth()
    assert requests.get(f"{sim.url}/api/v4/nowhere").json() == {"error": "404 Not Found"}


def test_pipeline_creation_errors_have_gitlabs_bodies(sim):
    ada, ada_token = sim.model.add_user("ada")
    guest, guest_token = sim.model.add_user("guest")
    sim.model.add_project("lab/analysis", members={ada: "developer", guest: "reporter"})
    url = f"{sim.url}/api/v4/projects/lab%2Fanalysis/pipeline"

    def post(token, body):
        answer = requests.post(url, headers={"PRIVATE-TOKEN": token}, json=body, timeout=5)
        return answer.status_code, answer.json()

    assert post(ada_token, {}) == (400, {"error": "ref is missing"})
    assert post(ada_token, {"ref": "nope"}) == (400, {"message": {"base": ["Reference not found"]}})
    assert post(ada_token, {"ref": "main", "variables": [{"value": "x"}]}) == (
        400,
        {"error": "variables[0][key] is missing"},
    )
    assert post(guest_token, {"ref": "main"}) == (403, {"message": "403 Forbidden"})
    status, body = post(ada_token, {"ref": "main", "variables": [{"key": "A", "value": "1"}]})
    assert status == 201 and body["status"] == "pending" and body["ref"] == "main"


def test_a_pipeline_advances_on_demand_and_its_trace_grows(sim):
    ada, token = sim.model.add_user("ada")
    sim.model.add_project("lab/analysis", members={ada: "developer"}, autorun=False)
    project = gitlab.Gitlab(sim.url, private_token=token).projects.get("lab/analysis")
    pipeline = project.pipelines.create({"ref": "main"})
    job_id = pipeline.jobs.list()[0].id

    lengths, statuses = [], []
    for _ in range(4):
        statuses.append(sim.advance(pipeline.id))
        lengths.append(len(project.jobs.get(job_id, lazy=True).trace()))
    final = sim.finish(pipeline.id)

    assert statuses == ["running"] * 4
    assert lengths == sorted(lengths) and len(set(lengths)) == 4
    assert final == "success"
    assert project.pipelines.get(pipeline.id).status == "success"
    assert [p.id for p in project.pipelines.list(status="success")] == [pipeline.id]
    assert project.jobs.get(job_id).status == "success"


def test_the_registry_lists_repositories_with_tags_and_tag_digests(sim):
    ada, token = sim.model.add_user("ada")
    sim_project = sim.model.add_project("lab/analysis", members={ada: "reporter"})
    pushed = sim.model.push_image(sim_project, "0" * 40)
    client = gitlab.Gitlab(sim.url, private_token=token)

    project = client.projects.get("lab/analysis")
    [repository] = project.repositories.list(tags=True, tags_count=True)
    tag = repository.tags.get("0" * 40)
    by_id = client.registry_repositories.get(repository.id, tags=True)

    assert repository.name == "kioskhub-env" and repository.attributes["tags_count"] == 1
    assert repository.attributes["tags"] == [
        {
            "name": "0" * 40,
            "path": f"lab/analysis/kioskhub-env:{'0' * 40}",
            "location": f"registry.gitlab.test/lab/analysis/kioskhub-env:{'0' * 40}",
        }
    ]
    assert tag.digest == pushed.digest and tag.location.endswith(f":{'0' * 40}")
    assert by_id.path == "lab/analysis/kioskhub-env" and len(by_id.tags) == 1
    with pytest.raises(gitlab.exceptions.GitlabGetError) as missing:
        repository.tags.get("nope")
    assert missing.value.error_message == "404 Tag Not Found"


def test_webhooks_carry_gitlabs_headers_and_payload_shapes(sim):
    ada, token = sim.model.add_user("ada")
    project = sim.model.add_project("lab/analysis", members={ada: "maintainer"})
    received: list[tuple[dict, dict]] = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client_project = gitlab.Gitlab(sim.url, private_token=token).projects.get(project.id)
        client_project.hooks.create(
            {
                "url": f"http://127.0.0.1:{server.server_address[1]}/hook",
                "token": "hook-token",
                "pipeline_events": True,
                "job_events": True,
            }
        )
        pipeline = client_project.pipelines.create({"ref": "main"})
        sim.wait_for_deliveries(6)
    finally:
        server.shutdown()

    events = [headers["X-Gitlab-Event"] for headers, _ in received]
    assert set(events) == {"Pipeline Hook", "Job Hook"}
    assert all(headers["X-Gitlab-Token"] == "hook-token" for headers, _ in received)
    parsed = [parse_event(headers["X-Gitlab-Event"], body) for headers, body in received]
    pipeline_events = [e for e in parsed if isinstance(e, PipelineEvent)]
    job_events = [e for e in parsed if isinstance(e, JobEvent)]
    assert [e.status for e in pipeline_events] == ["pending", "running", "success"]
    assert [e.status for e in job_events] == ["pending", "running", "success"]
    assert {(e.project_id, e.pipeline_id) for e in parsed} == {(project.id, pipeline.id)}
    last_pipeline_payload = [b for h, b in received if h["X-Gitlab-Event"] == "Pipeline Hook"][-1]
    assert last_pipeline_payload["object_attributes"]["detailed_status"] == "passed"
    assert last_pipeline_payload["builds"][0]["name"] == "kioskhub-env"
    assert last_pipeline_payload["project"]["path_with_namespace"] == "lab/analysis"
