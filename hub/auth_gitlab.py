"""Sign-in with GitLab (``auth.type: gitlab``): oauthenticator's GitLabOAuthenticator, set up
for the site's GitLab.

The user's GitLab groups (every group they are a member of, by full path, e.g.
``lab/physics``) become their JupyterHub groups at each sign-in and token refresh, so
profiles, environments and data mounts gated by group follow GitLab; ``allowed_groups`` and
``admin_groups`` decide who may sign in and who is admin. Groups listed in the site config's
``groups`` are added to their members as before. The OAuth tokens stay in the encrypted auth
state (the spawn form lists the user's own GitLab images with them) and are renewed with
the refresh token when GitLab no longer accepts the access token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from oauthenticator.gitlab import GitLabOAuthenticator
from tornado.httpclient import HTTPClientError
from traitlets import Dict, default

from kioskhub.hub.schema.site import Site

from .auth_oauth import KioskOAuthMixin, SignInRefused

CALLBACK_PATH = "/hub/gitlab/oauth_callback"
"""Where GitLab sends users back: the GitLab method's own prefix (``auth_methods``)."""
GROUP_PAGES = 20
"""At most this many pages of 100 groups are read per sign-in."""
GUEST = 10
"""GitLab's lowest access level: any membership of a group counts."""


def gitlab_url(site: Site) -> str:
    """The GitLab that users sign in with: ``auth.gitlab.url``, else ``gitlab.url``."""
    settings = site.auth.gitlab
    return (settings.url if settings and settings.url else site.gitlab.url or "").rstrip("/")


def gitlab_authenticator_config(site: Site) -> dict[str, Any]:
    """The traits of ``KioskGitLabAuthenticator`` for ``site`` (pure)."""
    settings = site.auth.gitlab
    label = settings.button_label
    allowed = sorted(settings.allowed_groups)
    refusal = (
        "Your GitLab account is not a member of a GitLab group that may use this site"
        + (f" ({', '.join(allowed)})" if allowed else "")
        + ". Ask the group's owner to add you, or the site admin to allow your group."
    )
    return {
        "gitlab_url": gitlab_url(site),
        "client_id": settings.client_id,
        "client_secret_env": settings.client_secret_env,
        "scope": list(settings.scopes),
        "oauth_callback_url": f"{site.hub.url}{CALLBACK_PATH}",
        "login_service": label,
        "manage_groups": True,
        "allowed_groups": set(settings.allowed_groups),
        "admin_groups": set(settings.admin_groups),
        "allow_all": settings.allow_all,
        "admin_users": set(site.hub.admin_users),
        "site_groups": {name: list(members) for name, members in site.groups.items()},
        "custom_403_message": refusal,
    }


def missing_client_secret(site: Site, environ: Mapping[str, str]) -> str | None:
    """Why GitLab sign-in cannot start (its secret is not in the environment), or None."""
    if site.auth.type != "gitlab":
        return None
    name = site.auth.gitlab.client_secret_env
    if environ.get(name, "").strip():
        return None
    return (
        f"auth.gitlab: the environment variable {name} is empty or unset; put the secret of "
        f"the GitLab application (id {site.auth.gitlab.client_id}) in it before starting "
        "the hub (see docs/sign-in/gitlab.md)"
    )


class KioskGitLabAuthenticator(KioskOAuthMixin, GitLabOAuthenticator):
    """GitLabOAuthenticator whose groups come from GitLab and whose usernames are checked.

    A GitLab username that is not a valid hub username, or that is reserved (``root``,
    ``build``, ``kh-…``), is refused with a page that says so (``KioskOAuthMixin``); no hub
    user is made.
    """

    site_groups = Dict(
        config=True,
        help="The site config's groups (group → usernames), added to GitLab's groups.",
    )

    @default("client_secret_env")
    def _default_secret_env(self) -> str:
        return "KIOSKHUB_GITLAB_CLIENT_SECRET"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.client_secret:
            raise ValueError(
                f"GitLab sign-in needs the application secret in ${self.client_secret_env}"
            )

    def claim_label(self) -> str:
        return "your GitLab username"

    # --- groups ----------------------------------------------------------------------------

    async def build_auth_state_dict(self, token_info, user_info):
        auth_state = super().build_auth_state_dict(token_info, user_info)
        auth_state["gitlab_groups"] = await self._gitlab_groups(token_info["access_token"])
        return auth_state

    async def _gitlab_groups(self, access_token: str) -> list[str]:
        """Full paths of every group the token's user is a member of."""
        groups: list[str] = []
        page = "1"
        for _ in range(GROUP_PAGES):
            query = urlencode({"min_access_level": GUEST, "per_page": 100, "page": page})
            try:
                response = await self.httpfetch(
                    f"{self.gitlab_api}/groups?{query}",
                    label="reading the user's GitLab groups",
                    parse_json=False,
                    headers={"Authorization": f"Bearer {access_token}"},
                    validate_cert=self.validate_server_cert,
                )
            except HTTPClientError as error:
                if error.code == 403:
                    raise SignInRefused(
                        403,
                        "GitLab did not let this site read your groups: the GitLab "
                        "application needs the read_api scope. Tell the site admin.",
                    ) from None
                raise
            groups += [group["full_path"] for group in json.loads(response.body)]
            page = response.headers.get("X-Next-Page", "")
            if not page:
                break
        return groups

    async def get_user_groups(self, auth_state: dict) -> set[str]:
        username = self.normalize_username(
            str((auth_state.get(self.user_auth_state_key) or {}).get("username", ""))
        )
        from_site = {name for name, members in self.site_groups.items() if username in members}
        return set(auth_state.get("gitlab_groups") or ()) | from_site

    # --- errors a person can act on -------------------------------------------------------

    async def get_token_info(self, handler, params):
        try:
            return await super().get_token_info(handler, params)
        except HTTPClientError as error:
            if error.code == 401:
                self.log.error(
                    "GitLab refused the application id %s or its secret (in $%s)",
                    self.client_id,
                    self.client_secret_env,
                )
                raise SignInRefused(
                    503,
                    "GitLab did not accept this site's application id or secret, so no one "
                    "can sign in with GitLab now. Tell the site admin: the GitLab "
                    "application's secret does not match the one the hub has.",
                ) from None
            if error.code == 400:
                raise SignInRefused(
                    403,
                    "GitLab did not accept the sign-in code (it was used already or has "
                    "expired). Sign in again.",
                ) from None
            raise
        except OSError:
            raise SignInRefused(
                503, f"GitLab at {self.gitlab_url} cannot be reached; try again later."
            ) from None
