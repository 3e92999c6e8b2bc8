"""The OpenAPI 3.1 document of the builder service's REST API (served at api/openapi.json)."""

from __future__ import annotations

from typing import Any

ENVIRONMENT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"},
        "owner": {"type": "string", "description": "hub user, or '@site' for config ones"},
        "spawn_name": {"type": "string", "description": "name in the spawn form: owner.name"},
        "display_name": {"type": "string"},
        "description": {"type": "string"},
        "source": {
            "type": "object",
            "properties": {
                "repo_url": {"type": ["string", "null"]},
                "ref": {"type": "string"},
                "commit_sha": {"type": ["string", "null"]},
                "subdir": {"type": "string"},
            },
        },
        "builder": {"enum": ["local", "container", "gitlab-ci", "site"]},
        "status": {"enum": ["queued", "building", "ready", "failed"]},
        "launchable": {"type": "boolean"},
        "visibility": {"type": "string", "description": "private, site or group:<name>"},
        "artifact": {
            "type": "object",
            "properties": {
                "venv_path": {"type": ["string", "null"]},
                "image_ref": {"type": ["string", "null"]},
                "image_digest": {"type": ["string", "null"]},
                "content_hash": {"type": ["string", "null"]},
                "notes": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "What to know about how it was built, e.g. that it has "
                    "another Python than runtime.txt asked for",
                },
            },
        },
        "latest_build": {"$ref": "#/components/schemas/Build"},
        "links": {"type": "object"},
    },
}
BUILD = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "status": {"enum": ["queued", "building", "ready", "failed"]},
        "ref": {"type": "string"},
        "commit_sha": {"type": ["string", "null"]},
        "phase": {"type": "string"},
        "progress": {"type": "integer", "minimum": 0, "maximum": 100},
        "error": {"type": ["string", "null"]},
        "log": {"type": "string"},
    },
}
REGISTER = {
    "type": "object",
    "required": ["name", "repository"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"},
        "repository": {"type": "string", "description": "git URL, or absolute path if allowed"},
        "ref": {"type": "string", "default": "HEAD"},
        "subdir": {"type": "string", "default": ""},
        "builder": {"enum": ["local", "container", "gitlab-ci"]},
        "visibility": {"type": "string", "default": "private"},
        "display_name": {"type": "string"},
        "description": {"type": "string"},
    },
}
ERROR = {
    "type": "object",
    "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
}


def _reply(description: str, schema: dict | None = None) -> dict:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    texts = {
        400: "invalid request",
        403: "not allowed",
        404: "not found or not visible",
        409: "name taken",
        429: "too many builds waiting",
    }
    return {str(c): _reply(texts[c], {"$ref": "#/components/schemas/Error"}) for c in codes}


def _id_param() -> list[dict]:
    return [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]


def openapi_document(prefix: str) -> dict[str, Any]:
    """The API description, with paths below ``prefix`` (e.g. /services/environments/)."""
    env_ref = {"$ref": "#/components/schemas/Environment"}
    one = "/api/environments/{id}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "KioskHub environments",
            "version": "1",
            "description": "Register git repositories, build them into environments, follow "
            "builds, share them. Authenticate with a hub API token (Authorization: token ...) "
            "or the service's OAuth cookie.",
        },
        "servers": [{"url": prefix.rstrip("/")}],
        "components": {
            "schemas": {
                "Environment": ENVIRONMENT,
                "Build": BUILD,
                "Register": REGISTER,
                "Error": ERROR,
            },
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
        },
        "security": [{"token": []}],
        "paths": {
            "/api/environments": {
                "get": {
                    "summary": "Environments you may see (admins: all)",
                    "responses": {
                        "200": _reply(
                            "the list",
                            {
                                "type": "object",
                                "properties": {"environments": {"type": "array", "items": env_ref}},
                            },
                        ),
                        **_errors(403),
                    },
                },
                "post": {
                    "summary": "Register a repository and queue its first build",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Register"}
                            }
                        },
                    },
                    "responses": {
                        "201": _reply("registered", env_ref),
                        **_errors(400, 403, 409, 429),
                    },
                },
            },
            one: {
                "parameters": _id_param(),
                "get": {
                    "summary": "One environment with its builds",
                    "responses": {"200": _reply("the environment", env_ref), **_errors(404)},
                },
                "delete": {
                    "summary": "Delete (owner or admin)",
                    "responses": {"204": _reply("deleted"), **_errors(400, 403, 404)},
                },
            },
            one + "/rebuild": {
                "parameters": _id_param(),
                "post": {
                    "summary": "Queue a new build (optionally at another ref); the ready "
                    "artifact stays until the new build succeeds",
                    "responses": {"202": _reply("queued", env_ref), **_errors(400, 403, 404, 429)},
                },
            },
            one + "/cancel": {
                "parameters": _id_param(),
                "post": {
                    "summary": "Cancel its queued or running build",
                    "responses": {"200": _reply("cancelled build ids"), **_errors(403, 404)},
                },
            },
            one + "/visibility": {
                "parameters": _id_param(),
                "put": {
                    "summary": "Share: private, group:<name> (your groups) or site (admins)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"visibility": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "responses": {"200": _reply("shared", env_ref), **_errors(400, 403, 404)},
                },
            },
            one + "/log": {
                "parameters": _id_param(),
                "get": {
                    "summary": "The latest build's log: text/plain, or text/event-stream "
                    "(one JSON event per line with progress and phase, then a 'done' event)",
                    "responses": {
                        "200": {
                            "description": "the log",
                            "content": {"text/plain": {}, "text/event-stream": {}},
                        },
                        **_errors(404),
                    },
                },
            },
            one + "/builds/{build_id}": {
                "parameters": [
                    *_id_param(),
                    {
                        "name": "build_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                ],
                "get": {
                    "summary": "One build with its log",
                    "responses": {
                        "200": _reply("the build", {"$ref": "#/components/schemas/Build"}),
                        **_errors(404),
                    },
                },
            },
            "/api/pinned-builds": {
                "post": {
                    "summary": "The gallery's token only (custom:environments:pinned-builds): "
                    "rebuild, beside environment {environment}, a commit it was built from, "
                    "for reader {user}",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["environment", "commit", "user"],
                                    "properties": {
                                        "environment": {"type": "string"},
                                        "commit": {"type": "string"},
                                        "user": {"type": "string"},
                                    },
                                }
                            }
                        }
                    },
                    "responses": {
                        "200": _reply("a pinned build of that commit, ready or under way"),
                        "202": _reply("queued"),
                        **_errors(400, 403, 404, 429),
                    },
                }
            },
            "/api/pinned-builds/{build_id}": {
                "parameters": [
                    {
                        "name": "build_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    },
                    {"name": "user", "in": "query", "required": True, "schema": {"type": "string"}},
                ],
                "get": {
                    "summary": "The gallery's token only: a pinned build asked for {user}",
                    "responses": {"200": _reply("the pinned build"), **_errors(403, 404)},
                },
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _reply("OpenAPI 3.1")},
                }
            },
        },
    }
