"""Webhook payloads as GitLab sends them: ``Pipeline Hook`` and ``Job Hook``.

The shapes follow GitLab's "Webhook events" documentation (pipeline events: ``object_kind``
``pipeline`` with ``object_attributes``, ``user``, ``project``, ``commit`` and ``builds``; job
events: ``object_kind`` ``build`` with flat ``build_*`` keys, ``pipeline_id``, ``project_id``,
``project_name``, ``commit`` and ``repository``). Timestamps in hook payloads use GitLab's
``"2016-08-12 15:23:28 UTC"`` form.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .model import GitLabModel, Job, Pipeline, Project, User

VISIBILITY_LEVELS = {"private": 0, "internal": 10, "public": 20}


def _hook_time(iso: str | None) -> str | None:
    if iso is None:
        return None
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _hook_user(user: User) -> dict:
    return {
        "id": user.id,
        "name": user.name,
        "username": user.username,
        "avatar_url": None,
        "email": "[REDACTED]",
    }


def _hook_project(model: GitLabModel, project: Project) -> dict:
    web_url = f"{model.web_url}/{project.path_with_namespace}"
    return {
        "id": project.id,
        "name": project.name,
        "description": "",
        "web_url": web_url,
        "avatar_url": None,
        "git_ssh_url": f"git@{model.web_url.split('://')[1]}:{project.path_with_namespace}.git",
        "git_http_url": f"{web_url}.git",
        "namespace": project.namespace.rsplit("/", 1)[-1].title(),
        "visibility_level": VISIBILITY_LEVELS[project.visibility],
        "path_with_namespace": project.path_with_namespace,
        "default_branch": project.default_branch,
        "ci_config_path": "",
    }


def _hook_commit(model: GitLabModel, pipeline: Pipeline) -> dict:
    return {
        "id": pipeline.sha,
        "message": "Update the environment\n",
        "title": "Update the environment",
        "timestamp": pipeline.created_at,
        "url": f"{model.web_url}/{pipeline.project.path_with_namespace}/-/commit/{pipeline.sha}",
        "author": {"name": pipeline.user.name, "email": "[REDACTED]"},
    }


def pipeline_hook_payload(model: GitLabModel, pipeline: Pipeline) -> dict:
    project_url = f"{model.web_url}/{pipeline.project.path_with_namespace}"
    return {
        "object_kind": "pipeline",
        "object_attributes": {
            "id": pipeline.id,
            "iid": pipeline.iid,
            "name": None,
            "ref": pipeline.ref,
            "tag": False,
            "sha": pipeline.sha,
            "before_sha": "0" * 40,
            "source": pipeline.source,
            "status": pipeline.status,
            "detailed_status": "passed" if pipeline.status == "success" else pipeline.status,
            "stages": sorted({job.stage for job in pipeline.jobs}),
            "created_at": _hook_time(pipeline.created_at),
            "finished_at": _hook_time(pipeline.finished_at),
            "duration": None,
            "queued_duration": None,
            "variables": [{"key": k, "value": v} for k, v in pipeline.variables.items()],
            "url": f"{project_url}/-/pipelines/{pipeline.id}",
        },
        "merge_request": None,
        "user": _hook_user(pipeline.user),
        "project": _hook_project(model, pipeline.project),
        "commit": _hook_commit(model, pipeline),
        "source_pipeline": None,
        "builds": [
            {
                "id": job.id,
                "stage": job.stage,
                "name": job.name,
                "status": job.status,
                "created_at": _hook_time(job.created_at),
                "started_at": _hook_time(job.started_at),
                "finished_at": _hook_time(job.finished_at),
                "duration": None,
                "queued_duration": None,
                "failure_reason": job.failure_reason,
                "when": "on_success",
                "manual": False,
                "allow_failure": False,
                "user": _hook_user(pipeline.user),
                "runner": None,
                "artifacts_file": {"filename": None, "size": None},
                "environment": None,
            }
            for job in pipeline.jobs
        ],
    }


def job_hook_payload(model: GitLabModel, pipeline: Pipeline, job: Job) -> dict:
    project = pipeline.project
    return {
        "object_kind": "build",
        "ref": pipeline.ref,
        "tag": False,
        "before_sha": "0" * 40,
        "sha": pipeline.sha,
        "retries_count": 0,
        "build_id": job.id,
        "build_name": job.name,
        "build_stage": job.stage,
        "build_status": job.status,
        "build_created_at": _hook_time(job.created_at),
        "build_started_at": _hook_time(job.started_at),
        "build_finished_at": _hook_time(job.finished_at),
        "build_duration": None,
        "build_queued_duration": None,
        "build_allow_failure": False,
        "build_failure_reason": job.failure_reason or "unknown_failure",
        "pipeline_id": pipeline.id,
        "runner": {
            "id": 1,
            "description": "kioskhub-sim-runner",
            "runner_type": "instance_type",
            "active": True,
            "is_shared": True,
            "tags": [],
        },
        "project_id": project.id,
        "project_name": f"{project.namespace.title()} / {project.name}",
        "user": _hook_user(pipeline.user),
        "commit": {
            "id": pipeline.id,
            "name": None,
            "sha": pipeline.sha,
            "message": "Update the environment\n",
            "author_name": pipeline.user.name,
            "author_email": "[REDACTED]",
            "status": pipeline.status,
            "duration": None,
            "started_at": _hook_time(pipeline.started_at),
            "finished_at": _hook_time(pipeline.finished_at),
        },
        "repository": {
            "name": project.name,
            "url": f"git@{model.web_url.split('://')[1]}:{project.path_with_namespace}.git",
            "description": "",
            "homepage": f"{model.web_url}/{project.path_with_namespace}",
            "git_http_url": f"{model.web_url}/{project.path_with_namespace}.git",
            "git_ssh_url": f"git@{model.web_url.split('://')[1]}:{project.path_with_namespace}.git",
            "visibility_level": VISIBILITY_LEVELS[project.visibility],
        },
        "project": _hook_project(model, project),
        "environment": None,
    }
