"""The ``auth:`` section of ``kioskhub.yaml``: how users sign in, and whose identity their
servers run as.

``type`` is the main sign-in method; ``also`` adds further methods to the login page (the
shared password today). ``oidc`` and ``gitlab`` configure the OAuth providers; ``identity``
says where a user's lab UID/GID comes from. Client secrets stay out of the file: the
section names the environment variable that holds them.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .section import Section

SignInMethod = Literal["shared-password", "oidc", "gitlab"]
EXTRA_METHODS = ("shared-password",)
"""Methods that may be offered beside the main one (``also``)."""

SECRET_ENV_PATTERN = r"^[A-Z_][A-Z0-9_]*$"


def _check_https_or_loopback(value: str) -> str:
    """An issuer or GitLab URL: https, or http on a loopback host (for tests and local use)."""
    if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
        raise ValueError("expected a URL like https://login.example.org/realms/lab")
    loopback = re.match(r"http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)", value)
    if value.startswith("http://") and not loopback:
        raise ValueError("use https:// (plain http is allowed only on 127.0.0.1/localhost)")
    return value.rstrip("/")


class GroupRules(Section):
    """Who may sign in and who is admin, by the groups the provider reports."""

    allowed_groups: tuple[str, ...] = Field(
        (),
        description="Groups whose members may sign in. Empty: everyone the provider "
        "signs in may use the site (with allow_all) or no one (without).",
    )
    admin_groups: tuple[str, ...] = Field(
        (), description="Groups whose members are hub admins (and may always sign in)."
    )
    allow_all: bool = Field(
        False,
        description="Let every user the provider signs in use the site, whatever their "
        "groups. Off: only allowed_groups and admin_groups (and hub.admin_users).",
    )


class OIDCSettings(GroupRules):
    """An OpenID Connect provider (Keycloak, EGI Check-In, CERN SSO, ...)."""

    issuer: str = Field(
        ...,
        description="The provider's issuer URL; KioskHub reads "
        "<issuer>/.well-known/openid-configuration at start-up and in check-config.",
    )
    client_id: str = Field(..., min_length=1, description="The OAuth client id of this site.")
    client_secret_env: str = Field(
        "KIOSKHUB_OIDC_CLIENT_SECRET",
        pattern=SECRET_ENV_PATTERN,
        description="Environment variable that holds the client secret (never in this file).",
    )
    scopes: tuple[str, ...] = Field(
        ("openid", "profile", "email"),
        description="Scopes asked of the provider; add the one that releases the groups "
        "claim if your provider needs it.",
    )
    username_claim: str = Field(
        "preferred_username",
        min_length=1,
        description="Claim (from the ID token / userinfo) that becomes the hub username.",
    )
    groups_claim: str = Field(
        "groups",
        min_length=1,
        description="Claim that lists the user's groups; they become JupyterHub groups, so "
        "profiles, environments and data mounts gated by group follow the provider.",
    )
    button_label: str = Field(
        "Sign in with your lab account", description="Text of the login page's button."
    )

    @field_validator("issuer")
    @classmethod
    def _check_issuer(cls, value: str) -> str:
        return _check_https_or_loopback(value)


class GitLabAuthSettings(GroupRules):
    """GitLab as the sign-in provider (GitLab's OAuth applications)."""

    url: str | None = Field(
        None,
        description="Base URL of the GitLab instance. Empty: the gitlab section's url.",
    )
    client_id: str = Field(..., min_length=1, description="The GitLab application id.")
    client_secret_env: str = Field(
        "KIOSKHUB_GITLAB_CLIENT_SECRET",
        pattern=SECRET_ENV_PATTERN,
        description="Environment variable that holds the application secret.",
    )
    scopes: tuple[str, ...] = Field(
        ("read_user", "read_api"),
        description="Scopes asked of GitLab: read_user to sign in; read_api to list the "
        "user's projects and images; read_repository to build private repositories.",
    )
    button_label: str = Field("Sign in with GitLab", description="Text of the login button.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_https_or_loopback(value)


class IdentitySettings(Section):
    """Where a user's lab UID/GID comes from, so that central storage's permissions decide."""

    source: Literal["accounts", "claims", "nss"] = Field(
        "accounts",
        description="accounts: each user runs as a kh-<name> system account KioskHub creates "
        "(sites without a directory); claims: the UID, GID and groups come from the OIDC "
        "provider's claims (see uid_claim, gid_claim, gids_claim), or, with the shared "
        "password (see trust_shared_password), from the claims an admin sets in each "
        "user's auth state through the REST API (auth_state.oauth_user); nss: from this "
        "machine's name service (/etc/passwd, LDAP, SSSD) by the hub username. A user "
        "without a valid identity gets no server.",
    )
    uid_claim: str = Field(
        "uidNumber", min_length=1, description="Claim holding the UID (a JSON integer)."
    )
    gid_claim: str = Field(
        "gidNumber", min_length=1, description="Claim holding the primary GID (a JSON integer)."
    )
    gids_claim: str | None = Field(
        None,
        description="Claim listing supplementary GIDs (a list of JSON integers). Empty: none "
        "from claims. Gids below min_id, or in KioskHub's reserved ranges, are left out.",
    )
    trust_shared_password: bool = Field(
        False,
        description="Give lab identities to users who sign in with the shared password too. "
        "Anyone who knows it may sign in under any username, and so run as that name's "
        "directory account (nss) or claims: only for a machine where everyone who has the "
        "password may act as every account. Off: a site that offers the shared password "
        "cannot use source claims or nss.",
    )
    min_id: int = Field(
        1000,
        ge=1,
        description="Smallest UID or GID a server may run as; smaller ones (root, system "
        "accounts, and the kh- accounts, which are system accounts) are refused.",
    )


class AuthSettings(Section):
    type: SignInMethod = Field(
        "shared-password",
        description="How users sign in. 'shared-password': any valid username with one "
        "shared password; 'oidc': an OpenID Connect provider (see oidc); 'gitlab': GitLab "
        "(see gitlab).",
    )
    also: tuple[Literal["shared-password"], ...] = Field(
        (),
        description="Further sign-in methods offered on the login page beside the main one "
        "(for guests or workshops while the lab's provider is the main way in).",
    )
    shared_password: str | None = Field(
        None,
        min_length=8,
        description="Password for all non-admin users. Left empty, one is generated on the "
        "first run and kept in the state folder.",
    )
    admin_password: str | None = Field(
        None,
        min_length=32,
        description="Password for the admin users. Left empty, one is generated and kept in "
        "the state folder.",
    )
    oidc: OIDCSettings | None = Field(None, description="The OpenID Connect provider.")
    gitlab: GitLabAuthSettings | None = Field(None, description="GitLab as sign-in provider.")
    identity: IdentitySettings = Field(
        IdentitySettings(), description="Whose UID/GID a user's server runs as."
    )
    refresh_age: int = Field(
        300,
        ge=30,
        description="Seconds after which a user's tokens are refreshed with the provider "
        "(and always before a server starts).",
    )

    @model_validator(mode="after")
    def _check_method(self) -> AuthSettings:
        if self.type == "oidc" and self.oidc is None:
            raise ValueError("auth.type is oidc: give auth.oidc (issuer, client_id)")
        if self.type == "gitlab" and self.gitlab is None:
            raise ValueError("auth.type is gitlab: give auth.gitlab (client_id)")
        if self.type in self.also:
            raise ValueError(f"auth.also repeats the main method {self.type!r}")
        if self.identity.source == "claims" and self.type == "gitlab":
            raise ValueError(
                "auth.identity.source is claims, but GitLab releases no uid or gid claims: "
                "use auth.type oidc, or source nss"
            )
        if (
            self.identity.source != "accounts"
            and "shared-password" in self.methods()
            and not self.identity.trust_shared_password
        ):
            raise ValueError(
                f"auth.identity.source is {self.identity.source}, but the shared password "
                "lets anyone who knows it sign in under any username, and so run as any "
                "lab account: take shared-password out of auth.type and auth.also, or set "
                "auth.identity.trust_shared_password if everyone who has it may act as "
                "every account"
            )
        return self

    def methods(self) -> tuple[str, ...]:
        """Every sign-in method the login page offers, the main one first."""
        return (self.type, *self.also)
