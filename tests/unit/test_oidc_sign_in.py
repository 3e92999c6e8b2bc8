"""The pure parts of OIDC sign-in: discovery documents, the settings from the site, and the
claim checks that refuse a sign-in before any hub user exists."""

from __future__ import annotations

import asyncio
import json

import pytest
from jinja2 import Template
from pydantic import ValidationError
from traitlets.config import Config

from kioskhub.hub.auth_methods import KioskMethodsAuthenticator
from kioskhub.hub.auth_oauth import SignInRefused
from kioskhub.hub.auth_oidc import KioskOIDCAuthenticator, oidc_authenticator_config
from kioskhub.hub.auth_settings import authenticator_settings
from kioskhub.hub.jupyterhub_settings import apply_settings
from kioskhub.hub.oidc_discovery import (
    DiscoveryError,
    ProviderEndpoints,
    discover,
    discover_for_site,
    parse_discovery,
)
from kioskhub.hub.schema.site import RESERVED_USERNAMES
from kioskhub.hub.state_dir import Passwords
from tests.unit.test_hub_settings import small_site

ISSUER = "https://login.lab.org/realms/lab"
ENDPOINTS = ProviderEndpoints(
    ISSUER, f"{ISSUER}/auth", f"{ISSUER}/token", f"{ISSUER}/userinfo", f"{ISSUER}/logout"
)
PASSWORDS = Passwords(user="correct-horse", admin="a" * 32, auth_state_key="f" * 64)


def discovery(**changes) -> bytes:
    document = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "userinfo_endpoint": f"{ISSUER}/userinfo",
        "end_session_endpoint": f"{ISSUER}/logout",
        **changes,
    }
    return json.dumps({k: v for k, v in document.items() if v is not None}).encode()


def oidc_site(tmp_path, also=("shared-password",), **oidc):
    auth = {
        "type": "oidc",
        "also": list(also),
        "oidc": {"issuer": ISSUER, "client_id": "kioskhub", "allowed_groups": ["physics"], **oidc},
    }
    return small_site(tmp_path, groups={}, auth=auth)


def test_a_discovery_document_gives_the_endpoints():
    assert parse_discovery(ISSUER + "/", discovery()) == ProviderEndpoints(
        ISSUER + "/", f"{ISSUER}/auth", f"{ISSUER}/token", f"{ISSUER}/userinfo", f"{ISSUER}/logout"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>login</html>", "is not JSON: check auth.oidc.issuer"),
        (b"[1, 2]", "is not a JSON object"),
        (
            discovery(issuer="https://evil.example.org"),
            "names the issuer 'https://evil.example.org'",
        ),
        (discovery(userinfo_endpoint=None), "lacks userinfo_endpoint"),
        (discovery(token_endpoint="javascript:alert(1)"), "lacks token_endpoint"),
    ],
    ids=["html", "not an object", "another issuer", "no userinfo", "not a URL"],
)
def test_bad_discovery_documents_are_named(body, message):
    with pytest.raises(DiscoveryError) as refused:
        parse_discovery(ISSUER, body)
    assert message in str(refused.value)
    assert f"{ISSUER}/.well-known/openid-configuration" in str(refused.value)


def test_an_unreachable_issuer_is_named():
    with pytest.raises(
        DiscoveryError, match=r"cannot reach the OIDC provider at http://127\.0\.0\.1:9/r"
    ):
        discover("http://127.0.0.1:9/r", timeout=5)


def test_an_unset_client_secret_stops_the_start(tmp_path):
    with pytest.raises(DiscoveryError, match="KIOSKHUB_OIDC_CLIENT_SECRET, which is not set"):
        discover_for_site(oidc_site(tmp_path), {})
    assert discover_for_site(small_site(tmp_path), {}) is None


def test_oidc_authenticator_config(tmp_path):
    site = oidc_site(tmp_path, admin_groups=["admins"])

    assert oidc_authenticator_config(site, ENDPOINTS) == {
        "KioskOIDCAuthenticator": {
            "authorize_url": f"{ISSUER}/auth",
            "token_url": f"{ISSUER}/token",
            "userdata_url": f"{ISSUER}/userinfo",
            "client_id": "kioskhub",
            "client_secret_env": "KIOSKHUB_OIDC_CLIENT_SECRET",
            "oauth_callback_url": "http://127.0.0.1:9000/hub/oidc/oauth_callback",
            "scope": ["openid", "profile", "email"],
            "enable_pkce": True,
            "username_claim": "preferred_username",
            "groups_claim": "groups",
            "manage_groups": True,
            "allowed_groups": {"physics"},
            "admin_groups": {"admins"},
            "allow_all": False,
            "admin_users": {"boss"},
            "login_service": "Sign in with your lab account",
            "reserved_usernames": set(RESERVED_USERNAMES),
        }
    }


def test_the_shared_password_alone_runs_its_authenticator_directly(tmp_path):
    settings = authenticator_settings(small_site(tmp_path), PASSWORDS)

    assert settings["JupyterHub"] == {"authenticator_class": "kioskhub.hub.auth.KioskAuthenticator"}
    assert set(settings) == {"JupyterHub", "KioskAuthenticator"}


def test_a_provider_and_the_password_are_composed(tmp_path):
    settings = authenticator_settings(oidc_site(tmp_path), PASSWORDS, ENDPOINTS)

    assert settings["JupyterHub"] == {
        "authenticator_class": "kioskhub.hub.auth_methods.KioskMethodsAuthenticator"
    }
    assert settings["KioskMethodsAuthenticator"] == {
        "methods": [
            ["oidc", "kioskhub.hub.auth_oidc.KioskOIDCAuthenticator"],
            ["shared-password", "kioskhub.hub.auth.KioskAuthenticator"],
        ],
        "admin_users": {"boss"},
        "reserved_usernames": set(RESERVED_USERNAMES),
    }
    assert settings["KioskAuthenticator"]["user_password"] == "correct-horse"
    assert settings["KioskOIDCAuthenticator"]["token_url"] == f"{ISSUER}/token"


def test_groups_in_the_config_are_refused_with_a_provider(tmp_path):
    with pytest.raises(ValidationError, match="groups come from the sign-in provider"):
        small_site(tmp_path, auth={"type": "oidc", "oidc": {"issuer": ISSUER, "client_id": "k"}})


def composed(tmp_path, **oidc) -> KioskMethodsAuthenticator:
    config = Config()
    apply_settings(
        config, authenticator_settings(oidc_site(tmp_path, **oidc), PASSWORDS, ENDPOINTS)
    )
    return KioskMethodsAuthenticator(config=config)


def test_the_login_page_shows_every_method_escaped(tmp_path):
    """Attack: markup and Jinja in the button's label (it goes through JupyterHub's Jinja)."""
    methods = composed(tmp_path, button_label="<b>{{ 7 * 7 }}</b>")

    page = Template(methods.get_custom_html("/hub/")).render(next="", xsrf="XSRF")

    assert "&lt;b&gt;&#123;&#123; 7 * 7 &#125;&#125;&lt;/b&gt;" in page
    assert "49" not in page and "<b>" not in page
    assert 'href="/hub/oidc/oauth_login"' in page
    assert 'action="/hub/shared-password/login"' in page
    assert 'value="XSRF"' in page


def test_each_method_serves_its_pages_under_its_own_prefix(tmp_path):
    methods = composed(tmp_path)

    routes = {path: handler.authenticator for path, handler in methods.get_handlers(None)}

    assert set(routes) == {
        "/oidc/oauth_login",
        "/oidc/oauth_callback",
        "/oidc/logout",
        "/shared-password/login",
    }
    assert routes["/oidc/oauth_callback"] is methods.by_method["oidc"]
    assert routes["/shared-password/login"] is methods.by_method["shared-password"]
    assert methods.manage_groups


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({}, "did not send the claim 'preferred_username' (auth.oidc.username_claim)"),
        ({"preferred_username": ["ada"]}, "as a list, not text"),
        ({"preferred_username": 1001}, "as a number, not text"),
        ({"preferred_username": "Root"}, "'root' is reserved for KioskHub or the system"),
        ({"preferred_username": "kh-build"}, "is reserved"),
        ({"preferred_username": "../etc"}, "invalid username"),
    ],
    ids=["missing", "a list", "a number", "root", "a KioskHub account", "a path"],
)
def test_bad_username_claims_are_refused(claims, message):
    with pytest.raises(SignInRefused) as refused:
        KioskOIDCAuthenticator().user_info_to_username(claims)
    assert refused.value.status_code == 403
    assert message in refused.value.message


def test_a_good_username_claim_is_normalised():
    assert KioskOIDCAuthenticator().user_info_to_username({"preferred_username": " Ada "}) == "ada"


def test_a_groups_claim_of_another_shape_is_refused():
    authenticator = KioskOIDCAuthenticator()

    groups = asyncio.run(authenticator.get_user_groups({"oauth_user": {"groups": ["a", "b"]}}))
    assert groups == {"a", "b"}
    assert asyncio.run(authenticator.get_user_groups({"oauth_user": {}})) == set()
    with pytest.raises(SignInRefused, match="must be a list of group names"):
        asyncio.run(authenticator.get_user_groups({"oauth_user": {"groups": "physics"}}))
