"""The state of the simulated GitLab: users, projects, pipelines, jobs, traces, registry.

Permissions follow GitLab's documented rules as far as KioskHub relies on them:

- public projects can be read by anyone, internal ones by any signed-in user, private ones
  only by members (and admins); a project the user may not read is "404 Project Not Found";
- reading pipelines, jobs, traces and the container registry of a private project takes
  the Reporter role; creating a pipeline takes Developer; managing webhooks takes Maintainer.

A pipeline runs one job, ``kioskhub-env`` in stage ``build``, through a script of steps:
pending → running (trace lines appended one per step) → success (the image is pushed to the
registry with a sha256 digest) or failed. ``step`` performs one step and returns the webhook
deliveries that the step causes; the server sends them.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

ACCESS_LEVELS = {"guest": 10, "reporter": 20, "developer": 30, "maintainer": 40, "owner": 50}
REPORTER, DEVELOPER, MAINTAINER = 20, 30, 40
FINISHED = frozenset({"success", "failed", "canceled", "skipped"})
JOB_NAME = "kioskhub-env"
IMAGE_NAME = "kioskhub-env"


def now_iso() -> str:
    """A timestamp written the way GitLab's API writes them."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(eq=False)
class User:
    id: int
    username: str
    name: str
    is_admin: bool = False


@dataclass(eq=False)
class Group:
    """A GitLab group (``full_path`` like ``lab/physics``) and its members' access levels."""

    id: int
    full_path: str
    members: dict[int, int]
    visibility: str = "private"

    @property
    def path(self) -> str:
        return self.full_path.rpartition("/")[2]


@dataclass(eq=False)
class OAuthApplication:
    """An OAuth application registered in GitLab (Admin area or user settings)."""

    name: str
    client_id: str
    secret: str
    redirect_uri: str
    scopes: tuple[str, ...]


@dataclass(eq=False)
class Hook:
    id: int
    url: str
    token: str | None
    pipeline_events: bool
    job_events: bool
    push_events: bool = False
    enable_ssl_verification: bool = True
    created_at: str = field(default_factory=now_iso)


@dataclass(eq=False)
class Project:
    id: int
    namespace: str
    path: str
    name: str
    visibility: str
    members: dict[int, int]
    branches: dict[str, str]
    default_branch: str
    build_outcome: str = "success"
    build_steps: int = 6
    autorun: bool = True
    pushes_image: bool = True
    container_registry_enabled: bool = True
    public_jobs: bool = True
    hooks: list[Hook] = field(default_factory=list)
    trigger_tokens: dict[str, int] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    last_activity_at: str = field(default_factory=now_iso)

    @property
    def path_with_namespace(self) -> str:
        return f"{self.namespace}/{self.path}"


@dataclass(eq=False)
class Job:
    id: int
    name: str
    stage: str
    status: str = "pending"
    trace: str = ""
    created_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    finished_at: str | None = None
    failure_reason: str | None = None


@dataclass(eq=False)
class Pipeline:
    id: int
    iid: int
    project: Project
    ref: str
    sha: str
    source: str
    user: User
    variables: dict[str, str]
    jobs: list[Job]
    status: str = "pending"
    steps: deque = field(default_factory=deque)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)
    started_at: str | None = None
    finished_at: str | None = None


@dataclass(eq=False)
class Tag:
    name: str
    digest: str
    revision: str
    created_at: str = field(default_factory=now_iso)
    total_size: int = 734_003_200


@dataclass(eq=False)
class RegistryRepository:
    id: int
    project: Project
    name: str
    tags: dict[str, Tag] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)

    @property
    def path(self) -> str:
        return f"{self.project.path_with_namespace}/{self.name}"


@dataclass(frozen=True)
class Delivery:
    """A webhook the server is to send: the hook, the X-Gitlab-Event name and the payload."""

    hook: Hook
    event: str
    payload: dict


class ModelError(Exception):
    """A request GitLab would refuse: HTTP status and GitLab's JSON error body."""

    def __init__(self, status: int, body: dict):
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


class GitLabModel:
    """Everything the simulated GitLab knows; one lock guards it across threads."""

    def __init__(
        self, web_url: str = "http://gitlab.test", registry_host: str = "registry.gitlab.test"
    ):
        self.web_url = web_url
        self.registry_host = registry_host
        self.lock = threading.RLock()
        self.users: dict[int, User] = {}
        self.tokens: dict[str, int] = {}
        self.token_expiry: dict[str, float] = {}
        """OAuth access tokens' expiry (time.time()); personal access tokens have none."""
        self.token_scopes: dict[str, tuple[str, ...]] = {}
        """OAuth access tokens' scopes; personal access tokens here act with every scope."""
        self.groups: dict[int, Group] = {}
        self.applications: dict[str, OAuthApplication] = {}
        self.projects: dict[int, Project] = {}
        self.pipelines: dict[int, Pipeline] = {}
        self.jobs: dict[int, tuple[Pipeline, Job]] = {}
        self.repositories: dict[int, RegistryRepository] = {}
        self._ids = {
            kind: itertools.count(start)
            for kind, start in (("user", 1), ("project", 100), ("pipeline", 5000), ("job", 9000))
        }
        self._ids["repository"] = itertools.count(300)
        self._ids["hook"] = itertools.count(1)
        self._ids["group"] = itertools.count(700)

    # --- set-up, as a test arranges its GitLab -----------------------------------------

    def add_user(self, username: str, *, admin: bool = False, token: str | None = None):
        """A user and a personal access token of theirs: (user, token)."""
        with self.lock:
            user = User(next(self._ids["user"]), username, username.title(), admin)
            self.users[user.id] = user
            token = token or f"glpat-{secrets.token_hex(10)}"
            self.tokens[token] = user.id
            return user, token

    def add_project(
        self,
        path_with_namespace: str,
        *,
        visibility: str = "private",
        members: dict[User, str] | None = None,
        branches: tuple[str, ...] = ("main",),
        build_outcome: str = "success",
        build_steps: int = 6,
        autorun: bool = True,
    ) -> Project:
        namespace, _, path = path_with_namespace.rpartition("/")
        with self.lock:
            project = Project(
                id=next(self._ids["project"]),
                namespace=namespace,
                path=path,
                name=path.replace("-", " ").title(),
                visibility=visibility,
                members={user.id: ACCESS_LEVELS[role] for user, role in (members or {}).items()},
                branches={ref: _sha(path_with_namespace, ref) for ref in branches},
                default_branch=branches[0],
                build_outcome=build_outcome,
                build_steps=build_steps,
                autorun=autorun,
            )
            self.projects[project.id] = project
            return project

    def add_group(self, full_path: str, members: dict[User, str] | None = None) -> Group:
        with self.lock:
            levels = {user.id: ACCESS_LEVELS[role] for user, role in (members or {}).items()}
            group = Group(next(self._ids["group"]), full_path, levels)
            self.groups[group.id] = group
            return group

    def add_application(
        self,
        name: str,
        redirect_uri: str,
        scopes: tuple[str, ...] = ("read_user", "read_api"),
    ) -> OAuthApplication:
        """An OAuth application, as an admin creates it; its id and secret are generated."""
        with self.lock:
            application = OAuthApplication(
                name, secrets.token_hex(32), f"gloas-{secrets.token_hex(32)}", redirect_uri, scopes
            )
            self.applications[application.client_id] = application
            return application

    def add_trigger_token(self, project: Project, owner: User) -> str:
        with self.lock:
            token = f"glptt-{secrets.token_hex(10)}"
            project.trigger_tokens[token] = owner.id
            return token

    def add_hook(self, project: Project, url: str, token: str | None) -> Hook:
        with self.lock:
            hook = Hook(next(self._ids["hook"]), url, token, pipeline_events=True, job_events=True)
            project.hooks.append(hook)
            return hook

    def push_image(self, project: Project, tag: str) -> Tag:
        """A ``kioskhub-env:<tag>`` in the project's registry, as the CI template pushes it."""
        with self.lock:
            repository = self._repository(project, IMAGE_NAME)
            digest = (
                "sha256:"
                + hashlib.sha256(f"{project.path_with_namespace}:{tag}".encode()).hexdigest()
            )
            repository.tags[tag] = Tag(tag, digest, revision=digest.removeprefix("sha256:"))
            return repository.tags[tag]

    def _repository(self, project: Project, name: str) -> RegistryRepository:
        for repository in self.repositories.values():
            if repository.project is project and repository.name == name:
                return repository
        repository = RegistryRepository(next(self._ids["repository"]), project, name)
        self.repositories[repository.id] = repository
        return repository

    # --- permissions --------------------------------------------------------------------

    def user_for_token(self, token: str) -> User | None:
        """The token's user; None for an unknown, revoked or expired token."""
        expiry = self.token_expiry.get(token)
        if expiry is not None and time.time() >= expiry:
            return None
        user_id = self.tokens.get(token)
        return self.users.get(user_id) if user_id is not None else None

    def access_level(self, user: User | None, project: Project) -> int:
        if user is None:
            return 0
        if user.is_admin:
            return ACCESS_LEVELS["owner"]
        return project.members.get(user.id, 0)

    def can_read(self, user: User | None, project: Project) -> bool:
        if project.visibility == "public" or (user is not None and user.is_admin):
            return True
        if project.visibility == "internal":
            return user is not None
        return self.access_level(user, project) > 0

    def can_read_ci(self, user: User | None, project: Project) -> bool:
        """Pipelines, jobs, traces and the registry: anyone on public projects, else Reporter."""
        if not self.can_read(user, project):
            return False
        public = project.visibility == "public" and project.public_jobs
        return public or self.access_level(user, project) >= REPORTER

    def find_project(self, user: User | None, id_or_path: str) -> Project:
        """The project by numeric id or full path, or 404 when it is missing or hidden."""
        with self.lock:
            project = None
            if id_or_path.isdigit():
                project = self.projects.get(int(id_or_path))
            else:
                wanted = id_or_path.lower()
                for candidate in self.projects.values():
                    if candidate.path_with_namespace.lower() == wanted:
                        project = candidate
            if project is None or not self.can_read(user, project):
                raise ModelError(404, {"message": "404 Project Not Found"})
            return project

    def visible_projects(self, user: User | None) -> list[Project]:
        with self.lock:
            return [p for p in self.projects.values() if self.can_read(user, p)]

    # --- CI -----------------------------------------------------------------------------

    def create_pipeline(
        self, project: Project, user: User, ref: str, variables: dict[str, str], source: str
    ) -> tuple[Pipeline, list[Delivery]]:
        with self.lock:
            if ref not in project.branches:
                raise ModelError(400, {"message": {"base": ["Reference not found"]}})
            pipeline = Pipeline(
                id=next(self._ids["pipeline"]),
                iid=1 + sum(1 for p in self.pipelines.values() if p.project is project),
                project=project,
                ref=ref,
                sha=project.branches[ref],
                source=source,
                user=user,
                variables=dict(variables),
                jobs=[Job(next(self._ids["job"]), JOB_NAME, "build")],
            )
            pipeline.steps = deque(self._script(pipeline))
            self.pipelines[pipeline.id] = pipeline
            for job in pipeline.jobs:
                self.jobs[job.id] = (pipeline, job)
            project.last_activity_at = now_iso()
            return pipeline, self._deliveries(pipeline, pipeline_event=True, job=pipeline.jobs[0])

    def _script(self, pipeline: Pipeline) -> list[tuple]:
        repository = f"{self.registry_host}/{pipeline.project.path_with_namespace}/{IMAGE_NAME}"
        image = f"{repository}:{pipeline.sha}"
        subdir = pipeline.variables.get("KIOSKHUB_SUBDIR", ".")
        ref = pipeline.variables.get("KIOSKHUB_REF", pipeline.ref)
        lines = [
            "$ echo \"KioskHub builds $KIOSKHUB_REF ($CI_COMMIT_SHA) from '$KIOSKHUB_SUBDIR' "
            'as $KIOSKHUB_IMAGE"',
            f"KioskHub builds {ref} ({pipeline.sha}) from '{subdir}' as {image}",
            "$ repo2docker --no-run --user-id 1000 --user-name jovyan --target-repo-dir /srv/repo "
            f"--image-name {image} .",
            "Picked Local content provider.",
            "Using PythonBuildPack builder",
            "Step 1/52 : FROM docker.io/library/buildpack-deps:jammy",
            'Step 52/52 : CMD ["jupyter", "notebook", "--ip", "0.0.0.0"]',
            f"Successfully tagged {image}",
            '$ "$KIOSKHUB_ENGINE" run --rm "$KIOSKHUB_IMAGE" jupyterhub-singleuser --version',
            "5.3.0",
            "kernel executed 1+1 = 2",
            '$ docker push "$KIOSKHUB_IMAGE"',
        ]
        if pipeline.project.build_outcome == "failed":
            lines = lines[:5] + [
                "ERROR: Could not find a version that satisfies the requirement no-such-package",
                "ERROR: No matching distribution found for no-such-package",
            ]
        steps = max(pipeline.project.build_steps, 1)
        per_step = max(1, -(-len(lines) // steps))
        chunks = [lines[i : i + per_step] for i in range(0, len(lines), per_step)]
        outcome = pipeline.project.build_outcome
        return [("start",), *[("trace", chunk) for chunk in chunks], ("finish", outcome)]

    def unfinished(self) -> list[Pipeline]:
        with self.lock:
            return [p for p in self.pipelines.values() if p.status not in FINISHED and p.steps]

    def step(self, pipeline: Pipeline) -> list[Delivery]:
        """Perform the pipeline's next step; the webhook deliveries it causes."""
        with self.lock:
            if not pipeline.steps:
                return []
            kind, *args = pipeline.steps.popleft()
            job = pipeline.jobs[0]
            stamp = now_iso()
            pipeline.updated_at = stamp
            if kind == "start":
                job.status, job.started_at = "running", stamp
                pipeline.status, pipeline.started_at = "running", stamp
                job.trace += (
                    "Running with gitlab-runner 17.5.0 (simulated)\n"
                    "  on kioskhub-sim-runner\n"
                    'Preparing the "docker" executor\n'
                )
                return self._deliveries(pipeline, pipeline_event=True, job=job)
            if kind == "trace":
                job.trace += "".join(f"{line}\n" for line in args[0])
                return []
            outcome = args[0]
            job.status, job.finished_at = outcome, stamp
            pipeline.status, pipeline.finished_at = outcome, stamp
            if outcome == "success" and pipeline.project.pushes_image:
                tag = self.push_image(pipeline.project, pipeline.sha)
                job.trace += f"{pipeline.sha}: digest: {tag.digest} size: 4321\nJob succeeded\n"
            elif outcome == "success":
                job.trace += "Job succeeded\n"
            else:
                job.failure_reason = "script_failure"
                job.trace += "ERROR: Job failed: exit code 1\n"
            return self._deliveries(pipeline, pipeline_event=True, job=job)

    def cancel(self, pipeline: Pipeline) -> list[Delivery]:
        """Cancel a running pipeline (``POST .../pipelines/:id/cancel``)."""
        with self.lock:
            if pipeline.status in FINISHED:
                return []
            stamp = now_iso()
            pipeline.steps.clear()
            pipeline.status, pipeline.finished_at, pipeline.updated_at = "canceled", stamp, stamp
            for job in pipeline.jobs:
                if job.status not in FINISHED:
                    job.status, job.finished_at = "canceled", stamp
            return self._deliveries(pipeline, pipeline_event=True, job=pipeline.jobs[0])

    def _deliveries(
        self, pipeline: Pipeline, *, pipeline_event: bool, job: Job | None
    ) -> list[Delivery]:
        from .webhooks import job_hook_payload, pipeline_hook_payload

        deliveries = []
        for hook in pipeline.project.hooks:
            if job is not None and hook.job_events:
                deliveries.append(Delivery(hook, "Job Hook", job_hook_payload(self, pipeline, job)))
            if pipeline_event and hook.pipeline_events:
                deliveries.append(
                    Delivery(hook, "Pipeline Hook", pipeline_hook_payload(self, pipeline))
                )
        return deliveries


def _sha(path: str, ref: str) -> str:
    return hashlib.sha1(f"{path}@{ref}".encode()).hexdigest()
