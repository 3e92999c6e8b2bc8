"""The GitLab v4 REST API of the simulation (tornado handlers), after GitLab's API docs.

Errors use GitLab's bodies: ``{"message": "404 Project Not Found"}``,
``{"message": "403 Forbidden"}``, ``{"error": "ref is missing"}``,
``{"message": {"base": ["Reference not found"]}}``, ``{"error": "404 Not Found"}`` for an
unknown route. Identity, permissions and pagination are in ``api_base``; the JSON bodies in
``shapes``. The routing table is at the end of the module.
"""

from __future__ import annotations

from .api_base import ApiHandler
from .model import (
    DEVELOPER,
    MAINTAINER,
    GitLabModel,
    Job,
    ModelError,
    Pipeline,
    Project,
    RegistryRepository,
)
from .shapes import (
    hook_json,
    job_json,
    pipeline_json,
    project_json,
    repository_json,
    tag_json,
    user_json,
)


class CurrentUserHandler(ApiHandler):
    def get(self) -> None:
        self.answer(user_json(self.model, self.signed_in()))


class ProjectsHandler(ApiHandler):
    """``GET /projects``: ``membership``, ``min_access_level``, ``search``, ``visibility``,
    ``order_by`` (id, name, path, created_at, last_activity_at), ``sort``, pagination."""

    def get(self) -> None:
        user = self.caller()
        with self.model.lock:
            projects = self.model.visible_projects(user)
            if self.flag("membership"):
                projects = [p for p in projects if user is not None and p.members.get(user.id)]
            level = self.get_query_argument("min_access_level", None)
            if level:
                projects = [p for p in projects if self.model.access_level(user, p) >= int(level)]
            visibility = self.get_query_argument("visibility", None)
            if visibility:
                projects = [p for p in projects if p.visibility == visibility]
            search = (self.get_query_argument("search", "") or "").lower()
            if search:
                in_namespace = self.flag("search_namespaces")
                projects = [
                    p
                    for p in projects
                    if search in p.name.lower()
                    or search in p.path.lower()
                    or (in_namespace and search in p.path_with_namespace.lower())
                ]
            order_by = self.get_query_argument("order_by", "created_at")
            if order_by not in (
                "id",
                "name",
                "path",
                "created_at",
                "updated_at",
                "last_activity_at",
            ):
                raise ModelError(400, {"error": "order_by does not have a valid value"})
            key = {"name": "name", "path": "path"}.get(order_by)
            projects.sort(key=(lambda p: getattr(p, key).lower()) if key else (lambda p: p.id))
            if self.get_query_argument("sort", "desc") == "desc":
                projects.reverse()
            self.paginated([project_json(self.model, p, user) for p in projects])


class ProjectHandler(ApiHandler):
    def get(self, project_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            self.answer(project_json(self.model, self.project(project_id, user), user))


class PipelinesHandler(ApiHandler):
    """``GET /projects/:id/pipelines`` (filters ``ref``, ``status``, ``sha``)."""

    def get(self, project_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            project = self.ci_project(project_id, user)
            pipelines = [p for p in self.model.pipelines.values() if p.project is project]
            for name in ("ref", "status", "sha"):
                wanted = self.get_query_argument(name, None)
                if wanted:
                    pipelines = [p for p in pipelines if getattr(p, name) == wanted]
            pipelines.sort(key=lambda p: p.id, reverse=True)
            self.paginated([pipeline_json(self.model, p) for p in pipelines])


class CreatePipelineHandler(ApiHandler):
    """``POST /projects/:id/pipeline`` with ``ref`` and ``variables`` (a list of key/value)."""

    def post(self, project_id: str) -> None:
        user = self.signed_in()
        arguments = self.body_arguments()
        with self.model.lock:
            project = self.project(project_id, user)
            self.require_level(user, project, DEVELOPER)
            ref = arguments.get("ref")
            if not ref:
                raise ModelError(400, {"error": "ref is missing"})
            variables = _variable_list(arguments.get("variables", []))
            pipeline, deliveries = self.model.create_pipeline(project, user, ref, variables, "api")
            body = pipeline_json(self.model, pipeline)
        self.simulation.deliver_soon(deliveries)
        self.answer(body, 201)


class TriggerPipelineHandler(ApiHandler):
    """``POST /projects/:id/trigger/pipeline`` with ``token``, ``ref`` and ``variables``."""

    def post(self, project_id: str) -> None:
        arguments = self.body_arguments()
        token = arguments.get("token") or self.get_query_argument("token", None)
        with self.model.lock:
            project = None
            owner = None
            for candidate in self.model.projects.values():
                if token and token in candidate.trigger_tokens:
                    project, owner = candidate, self.model.users[candidate.trigger_tokens[token]]
            matches = project is not None and (
                project_id == str(project.id)
                or project_id.lower() == project.path_with_namespace.lower()
            )
            if not matches:
                raise ModelError(404, {"message": "404 Not Found"})
            ref = arguments.get("ref")
            if not ref:
                raise ModelError(400, {"error": "ref is missing"})
            variables = arguments.get("variables") or {}
            if not isinstance(variables, dict) or not all(
                isinstance(v, str) for v in variables.values()
            ):
                raise ModelError(
                    400, {"error": "variables needs to be a map of key-valued strings"}
                )
            pipeline, deliveries = self.model.create_pipeline(
                project, owner, ref, variables, "trigger"
            )
            body = pipeline_json(self.model, pipeline)
        self.simulation.deliver_soon(deliveries)
        self.answer(body, 201)


def _variable_list(raw) -> dict[str, str]:
    if not isinstance(raw, list):
        raise ModelError(400, {"error": "variables is invalid"})
    variables = {}
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not item.get("key"):
            raise ModelError(400, {"error": f"variables[{index}][key] is missing"})
        key, value = str(item["key"]), item.get("value", "")
        if not key.replace("_", "a").isalnum() or not key.isascii():
            raise ModelError(
                400, {"message": {"key": ["can contain only letters, digits and '_'."]}}
            )
        variables[key] = str(value)
    return variables


class PipelineHandler(ApiHandler):
    def get(self, project_id: str, pipeline_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            project = self.ci_project(project_id, user)
            self.answer(pipeline_json(self.model, _pipeline(self.model, project, pipeline_id)))


class CancelPipelineHandler(ApiHandler):
    """``POST /projects/:id/pipelines/:pipeline_id/cancel`` (Developer role)."""

    def post(self, project_id: str, pipeline_id: str) -> None:
        user = self.signed_in()
        with self.model.lock:
            project = self.project(project_id, user)
            self.require_level(user, project, DEVELOPER)
            pipeline = _pipeline(self.model, project, pipeline_id)
            deliveries = self.model.cancel(pipeline)
            body = pipeline_json(self.model, pipeline)
        self.simulation.deliver_soon(deliveries)
        self.answer(body, 201)


class PipelineJobsHandler(ApiHandler):
    def get(self, project_id: str, pipeline_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            project = self.ci_project(project_id, user)
            pipeline = _pipeline(self.model, project, pipeline_id)
            jobs = sorted(pipeline.jobs, key=lambda job: job.id, reverse=True)
            self.paginated([job_json(self.model, pipeline, job) for job in jobs])


class JobHandler(ApiHandler):
    def get(self, project_id: str, job_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            project = self.ci_project(project_id, user)
            pipeline, job = _job(self.model, project, job_id)
            self.answer(job_json(self.model, pipeline, job))


class JobTraceHandler(ApiHandler):
    """``GET /projects/:id/jobs/:job_id/trace``: the whole log so far, as plain text."""

    def get(self, project_id: str, job_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            project = self.ci_project(project_id, user)
            _, job = _job(self.model, project, job_id)
            trace = job.trace
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(trace.encode("utf-8"))


def _pipeline(model: GitLabModel, project: Project, pipeline_id: str) -> Pipeline:
    pipeline = model.pipelines.get(int(pipeline_id)) if pipeline_id.isdigit() else None
    if pipeline is None or pipeline.project is not project:
        raise ModelError(404, {"message": "404 Not found"})
    return pipeline


def _job(model: GitLabModel, project: Project, job_id: str) -> tuple[Pipeline, Job]:
    found = model.jobs.get(int(job_id)) if job_id.isdigit() else None
    if found is None or found[0].project is not project:
        raise ModelError(404, {"message": "404 Not found"})
    return found


class HooksHandler(ApiHandler):
    """``GET``/``POST /projects/:id/hooks`` (Maintainer role)."""

    def get(self, project_id: str) -> None:
        user = self.signed_in()
        with self.model.lock:
            project = self.project(project_id, user)
            self.require_level(user, project, MAINTAINER)
            self.paginated([hook_json(project, hook) for hook in project.hooks])

    def post(self, project_id: str) -> None:
        user = self.signed_in()
        arguments = self.body_arguments()
        with self.model.lock:
            project = self.project(project_id, user)
            self.require_level(user, project, MAINTAINER)
            url = arguments.get("url")
            if not url:
                raise ModelError(400, {"error": "url is missing"})
            hook = self.model.add_hook(project, url, arguments.get("token"))
            hook.pipeline_events = bool(arguments.get("pipeline_events", False))
            hook.job_events = bool(arguments.get("job_events", False))
            hook.push_events = bool(arguments.get("push_events", True))
            hook.enable_ssl_verification = bool(arguments.get("enable_ssl_verification", True))
            self.answer(hook_json(project, hook), 201)


class ProjectRepositoriesHandler(ApiHandler):
    """``GET /projects/:id/registry/repositories`` (``tags``, ``tags_count``)."""

    def get(self, project_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            project = self.ci_project(project_id, user)
            if not project.container_registry_enabled:
                raise ModelError(404, {"message": "404 Not found"})
            repositories = [r for r in self.model.repositories.values() if r.project is project]
            tags, tags_count = self.flag("tags"), self.flag("tags_count")
            self.paginated(
                [
                    repository_json(self.model, r, tags=tags, tags_count=tags_count)
                    for r in repositories
                ]
            )


class RepositoryTagsHandler(ApiHandler):
    def get(self, project_id: str, repository_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            repository = _repository(self.model, self.ci_project(project_id, user), repository_id)
            listed = repository_json(self.model, repository, tags=True, tags_count=False)
            self.paginated(listed["tags"])


class RepositoryTagHandler(ApiHandler):
    """``GET /projects/:id/registry/repositories/:repository_id/tags/:tag_name``."""

    def get(self, project_id: str, repository_id: str, tag_name: str) -> None:
        user = self.caller()
        with self.model.lock:
            repository = _repository(self.model, self.ci_project(project_id, user), repository_id)
            tag = repository.tags.get(tag_name)
            if tag is None:
                raise ModelError(404, {"message": "404 Tag Not Found"})
            self.answer(tag_json(self.model, repository, tag))


class RegistryRepositoryHandler(ApiHandler):
    """``GET /registry/repositories/:id`` (``tags``, ``tags_count``)."""

    def get(self, repository_id: str) -> None:
        user = self.caller()
        with self.model.lock:
            repository = (
                self.model.repositories.get(int(repository_id)) if repository_id.isdigit() else None
            )
            if repository is None or not self.model.can_read_ci(user, repository.project):
                raise ModelError(404, {"message": "404 Repository Not Found"})
            body = repository_json(
                self.model, repository, tags=self.flag("tags"), tags_count=self.flag("tags_count")
            )
            self.answer(body)


def _repository(model: GitLabModel, project: Project, repository_id: str) -> RegistryRepository:
    repository = model.repositories.get(int(repository_id)) if repository_id.isdigit() else None
    if repository is None or repository.project is not project:
        raise ModelError(404, {"message": "404 Repository Not Found"})
    return repository


class NotFoundHandler(ApiHandler):
    def prepare(self) -> None:
        super().prepare()
        self.answer({"error": "404 Not Found"}, 404)


PROJECT = r"/api/v4/projects/([^/]+)"

ROUTES = [
    (r"/api/v4/user", CurrentUserHandler),
    (r"/api/v4/projects", ProjectsHandler),
    (PROJECT, ProjectHandler),
    (PROJECT + r"/pipelines", PipelinesHandler),
    (PROJECT + r"/pipeline", CreatePipelineHandler),
    (PROJECT + r"/trigger/pipeline", TriggerPipelineHandler),
    (PROJECT + r"/pipelines/([^/]+)", PipelineHandler),
    (PROJECT + r"/pipelines/([^/]+)/jobs", PipelineJobsHandler),
    (PROJECT + r"/pipelines/([^/]+)/cancel", CancelPipelineHandler),
    (PROJECT + r"/jobs/([^/]+)", JobHandler),
    (PROJECT + r"/jobs/([^/]+)/trace", JobTraceHandler),
    (PROJECT + r"/hooks", HooksHandler),
    (PROJECT + r"/registry/repositories", ProjectRepositoriesHandler),
    (PROJECT + r"/registry/repositories/([^/]+)/tags", RepositoryTagsHandler),
    (PROJECT + r"/registry/repositories/([^/]+)/tags/([^/]+)", RepositoryTagHandler),
    (r"/api/v4/registry/repositories/([^/]+)", RegistryRepositoryHandler),
]
