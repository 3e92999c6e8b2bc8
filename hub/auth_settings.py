"""Site → the authenticator part of the JupyterHub settings (pure).

One method alone runs its authenticator directly (the shared password, GitLab); OIDC, or
more than one method, runs ``KioskMethodsAuthenticator`` with every enabled method from the
``auth_methods.METHODS`` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kioskhub.hub.schema.site import RESERVED_USERNAMES, USERNAME_PATTERN, Site

from .auth_methods import METHODS
from .oidc_discovery import DiscoveryError, ProviderEndpoints, discover_for_site
from .state_dir import Passwords

COMPOSED = "kioskhub.hub.auth_methods.KioskMethodsAuthenticator"


def authenticator_settings(
    site: Site, passwords: Passwords, oidc_endpoints: ProviderEndpoints | None = None
) -> dict[str, dict[str, Any]]:
    """``{class name: {trait: value}}`` for the sign-in methods of ``site``."""
    methods = site.auth.methods()
    available = {"site": site, "passwords": passwords, "oidc_endpoints": oidc_endpoints}
    if len(methods) == 1 and not METHODS[methods[0]].routed_alone:
        alone = METHODS[methods[0]]
        return {
            "JupyterHub": {"authenticator_class": alone.authenticator_class},
            **alone.traits(**available),
        }
    settings: dict[str, dict[str, Any]] = {
        "JupyterHub": {"authenticator_class": COMPOSED},
        "KioskMethodsAuthenticator": {
            "methods": [[name, METHODS[name].authenticator_class] for name in methods],
            "admin_users": set(site.hub.admin_users),
            "reserved_usernames": set(RESERVED_USERNAMES),
        },
    }
    for name in methods:
        settings.update(METHODS[name].traits(**available))
    return settings


def provider_endpoints(site: Site, environ: Mapping[str, str]) -> ProviderEndpoints | None:
    """Check that each provider's client secret is in the environment and read the OIDC
    provider's discovery document (None without OIDC); DiscoveryError says what is wrong.

    ``check-config``, ``up`` and the hub's start all check through this.
    """
    if site.auth.type == "gitlab":
        from .auth_gitlab import missing_client_secret

        missing = missing_client_secret(site, environ)
        if missing:
            raise DiscoveryError(missing)
    return discover_for_site(site, dict(environ))


def shared_password_config(site: Site, passwords: Passwords) -> dict[str, dict[str, Any]]:
    """Traits of the shared-password method: any valid username, one shared password."""
    return {
        "KioskAuthenticator": {
            "user_password": passwords.user,
            "admin_password": passwords.admin,
            "admin_users": set(site.hub.admin_users),
            "allow_all": True,
            "username_pattern": USERNAME_PATTERN,
            "reserved_usernames": set(RESERVED_USERNAMES),
        }
    }


def gitlab_config(site: Site) -> dict[str, dict[str, Any]]:
    """Traits of the GitLab method (``auth_gitlab.gitlab_authenticator_config``)."""
    from .auth_gitlab import gitlab_authenticator_config

    return {"KioskGitLabAuthenticator": gitlab_authenticator_config(site)}
