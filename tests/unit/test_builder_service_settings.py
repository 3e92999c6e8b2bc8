"""The builder service's hub settings, its OpenAPI document and its declared authorization."""

from __future__ import annotations

import json

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder import service_api
from kioskhub.image_builder.hub_service import builder_hub_settings, site_from_json
from kioskhub.image_builder.openapi import openapi_document
from kioskhub.image_builder.pinned_builds_api import pinned_build_routes


def site(tmp_path, **builder) -> Site:
    (tmp_path / "examples").mkdir(exist_ok=True)
    return Site.model_validate(
        {
            "hub": {"state_dir": str(tmp_path / "state")},
            "auth": {"shared_password": "correct-horse"},
            "examples": {"source": str(tmp_path / "examples")},
            "builder": builder,
        }
    )


def test_off_by_default(tmp_path):
    assert builder_hub_settings(site(tmp_path), python="/py") == {}


def test_service_role_and_user_access(tmp_path):
    settings = builder_hub_settings(site(tmp_path, enabled=True, port=8123), python="/py")
    service = settings["JupyterHub"]["services"][0]
    environment = service.pop("environment")
    assert settings == {
        "JupyterHub": {
            "services": [
                {
                    "name": "environments",
                    "url": "http://127.0.0.1:8123",
                    "command": ["/py", "-m", "kioskhub.image_builder.service"],
                    "cwd": str(tmp_path / "state"),
                    "oauth_no_confirm": True,
                    "display": True,
                }
            ],
            "load_roles": [
                {"name": "user", "scopes": ["self", "access:services!service=environments"]},
                {
                    "name": "kioskhub-environments",
                    "description": (
                        "The environment builder: who a user is, their groups, sign-in tokens"
                    ),
                    "services": ["environments"],
                    "scopes": ["read:users:name", "read:users:groups", "admin:auth_state"],
                },
            ],
        }
    }
    handed = json.loads(environment["KIOSKHUB_SITE_JSON"])
    assert "auth" not in handed  # the passwords stay with the hub
    assert site_from_json(environment["KIOSKHUB_SITE_JSON"]).builder.port == 8123


def test_every_api_method_declares_who_may_call_it():
    routes = service_api.api_routes("/services/environments/", state=None)
    for _, handler, *_ in routes:
        for method in ("get", "post", "put", "delete"):
            if method in handler.__dict__ and handler is not service_api.OpenAPIHandler:
                assert getattr(handler.__dict__[method], "permission", None) in (
                    "user",
                    "see",
                    "manage",
                ), f"{handler.__name__}.{method}"
    for _, handler, *_ in pinned_build_routes("/services/environments/", state=None):
        for method in ("get", "post", "put", "delete"):
            if method in handler.__dict__:
                permission = handler.__dict__[method].permission
                assert permission == "custom:environments:pinned-builds", handler.__name__
    assert service_api.EnvironmentHandler.delete.permission == "manage"
    assert service_api.EnvironmentHandler.get.permission == "see"
    assert service_api.VisibilityHandler.put.permission == "manage"


def test_openapi_document_lists_every_route():
    document = openapi_document("/services/environments/")
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "/services/environments"}]
    assert set(document["paths"]) == {
        "/api/environments",
        "/api/environments/{id}",
        "/api/environments/{id}/rebuild",
        "/api/environments/{id}/cancel",
        "/api/environments/{id}/visibility",
        "/api/environments/{id}/log",
        "/api/environments/{id}/builds/{build_id}",
        "/api/pinned-builds",
        "/api/pinned-builds/{build_id}",
        "/api/openapi.json",
    }
    assert set(document["paths"]["/api/environments/{id}"]) == {"parameters", "get", "delete"}
