"""JSON bodies of the simulated GitLab API, shaped as GitLab's API documentation shows them."""

from __future__ import annotations

from .model import GitLabModel, Hook, Job, Pipeline, Project, RegistryRepository, Tag, User


def user_json(model: GitLabModel, user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "state": "active",
        "locked": False,
        "avatar_url": None,
        "web_url": f"{model.web_url}/{user.username}",
        "is_admin": user.is_admin,
    }


def project_json(model: GitLabModel, project: Project, user: User | None) -> dict:
    web_url = f"{model.web_url}/{project.path_with_namespace}"
    level = model.access_level(user, project)
    return {
        "id": project.id,
        "description": "",
        "name": project.name,
        "name_with_namespace": f"{project.namespace.title()} / {project.name}",
        "path": project.path,
        "path_with_namespace": project.path_with_namespace,
        "created_at": project.created_at,
        "default_branch": project.default_branch,
        "ssh_url_to_repo": f"git@{model.web_url.split('://')[1]}:{project.path_with_namespace}.git",
        "http_url_to_repo": f"{web_url}.git",
        "web_url": web_url,
        "visibility": project.visibility,
        "public_jobs": project.public_jobs,
        "namespace": {
            "id": 1000 + sum(map(ord, project.namespace)),
            "name": project.namespace.rsplit("/", 1)[-1].title(),
            "path": project.namespace.rsplit("/", 1)[-1],
            "kind": "group",
            "full_path": project.namespace,
        },
        "container_registry_enabled": project.container_registry_enabled,
        "container_registry_access_level": "enabled"
        if project.container_registry_enabled
        else "disabled",
        "container_registry_image_prefix": f"{model.registry_host}/{project.path_with_namespace}",
        "last_activity_at": project.last_activity_at,
        "archived": False,
        "permissions": {
            "project_access": {"access_level": level, "notification_level": 3} if level else None,
            "group_access": None,
        },
    }


def _project_url(model: GitLabModel, project: Project) -> str:
    return f"{model.web_url}/{project.path_with_namespace}"


def pipeline_json(model: GitLabModel, pipeline: Pipeline) -> dict:
    return {
        "id": pipeline.id,
        "iid": pipeline.iid,
        "project_id": pipeline.project.id,
        "sha": pipeline.sha,
        "ref": pipeline.ref,
        "status": pipeline.status,
        "source": pipeline.source,
        "created_at": pipeline.created_at,
        "updated_at": pipeline.updated_at,
        "started_at": pipeline.started_at,
        "finished_at": pipeline.finished_at,
        "web_url": f"{_project_url(model, pipeline.project)}/-/pipelines/{pipeline.id}",
        "user": user_json(model, pipeline.user),
        "detailed_status": {"text": pipeline.status, "group": pipeline.status},
    }


def job_json(model: GitLabModel, pipeline: Pipeline, job: Job) -> dict:
    return {
        "id": job.id,
        "name": job.name,
        "stage": job.stage,
        "status": job.status,
        "ref": pipeline.ref,
        "tag": False,
        "allow_failure": False,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "duration": None,
        "failure_reason": job.failure_reason,
        "web_url": f"{model.web_url}/{pipeline.project.path_with_namespace}/-/jobs/{job.id}",
        "user": user_json(model, pipeline.user),
        "commit": {"id": pipeline.sha, "short_id": pipeline.sha[:8]},
        "pipeline": {
            "id": pipeline.id,
            "project_id": pipeline.project.id,
            "ref": pipeline.ref,
            "sha": pipeline.sha,
            "status": pipeline.status,
        },
        "project": {"ci_job_token_scope_enabled": False},
    }


def repository_json(
    model: GitLabModel, repository: RegistryRepository, *, tags: bool, tags_count: bool
) -> dict:
    location = f"{model.registry_host}/{repository.path}"
    body = {
        "id": repository.id,
        "name": repository.name,
        "path": repository.path,
        "project_id": repository.project.id,
        "location": location,
        "created_at": repository.created_at,
        "cleanup_policy_started_at": None,
        "status": None,
    }
    if tags_count:
        body["tags_count"] = len(repository.tags)
    if tags:
        body["tags"] = [
            {
                "name": tag.name,
                "path": f"{repository.path}:{tag.name}",
                "location": f"{location}:{tag.name}",
            }
            for tag in repository.tags.values()
        ]
    return body


def tag_json(model: GitLabModel, repository: RegistryRepository, tag: Tag) -> dict:
    return {
        "name": tag.name,
        "path": f"{repository.path}:{tag.name}",
        "location": f"{model.registry_host}/{repository.path}:{tag.name}",
        "revision": tag.revision,
        "short_revision": tag.revision[:9],
        "digest": tag.digest,
        "created_at": tag.created_at,
        "total_size": tag.total_size,
    }


def hook_json(project: Project, hook: Hook) -> dict:
    return {
        "id": hook.id,
        "url": hook.url,
        "project_id": project.id,
        "push_events": hook.push_events,
        "pipeline_events": hook.pipeline_events,
        "job_events": hook.job_events,
        "enable_ssl_verification": hook.enable_ssl_verification,
        "created_at": hook.created_at,
    }
