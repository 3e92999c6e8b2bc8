"""Which finished hub requests become audit entries: literal expectations, and the requests
that must not (reads, failures, a user acting on themself)."""

from __future__ import annotations

import pytest

from kioskhub.hub.audit_requests import (
    AuditAction,
    FinishedRequest,
    classify,
    is_cull,
    server_of,
)

CODE = "http://127.0.0.1:8000/user/bob/oauth_callback?code=abc&state=xyz"


def admin(method: str, path: str, status: int, **more) -> FinishedRequest:
    return FinishedRequest(method, path, "admin", "user", status, **more)


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            admin("DELETE", "api/users/bob/server", 204),
            AuditAction("stop server", "bob", "server: default"),
        ),
        (
            admin("DELETE", "api/users/bob/servers/gpu%20run", 202, body={"remove": True}),
            AuditAction("stop server", "bob", "server: gpu run; removed"),
        ),
        (
            admin("POST", "api/users/bob/server", 202),
            AuditAction("start server", "bob", "server: default"),
        ),
        (admin("POST", "spawn/bob", 302), AuditAction("start server", "bob", "server: default")),
        (admin("DELETE", "api/users/bob", 204), AuditAction("delete user", "bob", "")),
        (
            admin("PATCH", "api/users/bob", 200, body={"admin": True, "name": "rob", "x": 1}),
            AuditAction("change user", "bob", '{"admin": true, "name": "rob", "x": "(not shown)"}'),
        ),
        (
            admin("POST", "api/users/bob/tokens", 201, body={"scopes": ["read:users"]}),
            AuditAction("create token", "bob", 'scopes: ["read:users"]'),
        ),
        (
            admin("POST", "api/users/bob/tokens", 201),
            AuditAction("create token", "bob", "scopes: all of the user"),
        ),
        (
            admin("DELETE", "api/users/bob/tokens/a17", 204),
            AuditAction("revoke token", "bob", "token: a17"),
        ),
        (
            admin("GET", "api/oauth2/authorize", 302, oauth_client_owner="bob", redirect=CODE),
            AuditAction("access server", "bob", "through the hub's OAuth"),
        ),
        (
            admin("POST", "api/oauth2/authorize", 302, oauth_client_owner="bob", redirect=CODE),
            AuditAction("access server", "bob", "through the hub's OAuth"),
        ),
        (
            FinishedRequest("DELETE", "api/users/bob/server", "idle-culler", "service", 202),
            AuditAction("stop server", "bob", "server: default"),
        ),
    ],
)
def test_admin_actions_on_another_user(request_, expected):
    assert classify(request_) == expected


@pytest.mark.parametrize(
    "request_",
    [
        # A user stopping, starting, opening their own server or making their own token.
        FinishedRequest("DELETE", "api/users/bob/server", "bob", "user", 204),
        FinishedRequest("POST", "api/users/bob/tokens", "bob", "user", 201),
        FinishedRequest(
            "GET", "api/oauth2/authorize", "bob", "user", 302, None, "bob", redirect=CODE
        ),
        # Failed requests: refused, not found, not running.
        admin("DELETE", "api/users/bob/server", 403),
        admin("DELETE", "api/users/bob", 404),
        admin("DELETE", "api/users/bob/server", 400),
        # Reads.
        admin("GET", "api/users/bob", 200),
        admin("GET", "api/users/bob/tokens", 200),
        admin("GET", "spawn/bob", 200),
        # The confirmation page, a refused authorization, a service's client.
        admin("GET", "api/oauth2/authorize", 200, oauth_client_owner="bob"),
        admin(
            "GET",
            "api/oauth2/authorize",
            302,
            oauth_client_owner="bob",
            redirect="http://x/user/bob/oauth_callback?error=access_denied",
        ),
        admin("GET", "api/oauth2/authorize", 302, redirect=CODE),
        # Nobody signed in.
        FinishedRequest("DELETE", "api/users/bob/server", "", "user", 204),
        # Paths that only look alike.
        admin("DELETE", "api/users/bob/server/progress", 204),
        admin("POST", "api/users", 201),
    ],
)
def test_what_is_not_an_admin_action(request_):
    assert classify(request_) is None


def test_a_service_named_like_its_target_is_still_audited():
    request = FinishedRequest("DELETE", "api/users/bob/server", "bob", "service", 204)
    assert classify(request) == AuditAction("stop server", "bob", "server: default")


def test_only_the_idle_culler_stopping_a_server_is_a_cull():
    culler = FinishedRequest("DELETE", "api/users/bob/servers/gpu", "idle-culler", "service", 204)
    action = classify(culler)
    assert is_cull(culler, action) and server_of(action) == "gpu"
    assert not is_cull(admin("DELETE", "api/users/bob/server", 204), classify(culler))
    # A user named like the culler is not the culler.
    user = FinishedRequest("DELETE", "api/users/bob/server", "idle-culler", "user", 204)
    assert not is_cull(user, classify(user))
    deleted = FinishedRequest("DELETE", "api/users/bob", "idle-culler", "service", 204)
    assert not is_cull(deleted, classify(deleted))


def test_a_long_detail_is_cut():
    request = admin("PATCH", "api/users/bob", 200, body={"name": "x" * 2000})
    detail = classify(request).detail
    assert len(detail) == 500 and detail.endswith("…")
