"""Sign-in with an OpenID Connect provider: oauthenticator's GenericOAuthenticator, set up
from the site config and the provider's discovery document.

The authorization code flow with PKCE; the username and groups come from the userinfo
claims; every claim is kept (encrypted) in the auth state under ``oauth_user``, where the
lab identity reads ``uidNumber``/``gidNumber``; tokens are refreshed with the refresh token
when the access token has expired (oauthenticator's ``refresh_user``).
"""

from __future__ import annotations

from typing import Any

from oauthenticator.generic import GenericOAuthenticator
from traitlets import Unicode, default

from kioskhub.hub.schema.site import RESERVED_USERNAMES, Site

from .auth_oauth import KioskOAuthMixin, SignInRefused
from .oidc_discovery import ProviderEndpoints

CALLBACK_PATH = "/hub/oidc/oauth_callback"
"""Where the provider sends the browser back (register it as the client's redirect URI)."""


class KioskOIDCAuthenticator(KioskOAuthMixin, GenericOAuthenticator):
    """GenericOAuthenticator with KioskHub's username rules and a checked groups claim."""

    groups_claim = Unicode("groups", config=True, help="Userinfo claim listing the user's groups.")

    @default("username_claim")
    def _preferred_username(self) -> str:
        return "preferred_username"

    def claim_label(self) -> str:
        return f"the claim {self.username_claim!r} (auth.oidc.username_claim)"

    async def get_user_groups(self, auth_state: dict) -> set[str]:
        """The groups claim as a set of names; a claim of another shape is refused."""
        claims = auth_state.get(self.user_auth_state_key) or {}
        groups = claims.get(self.groups_claim)
        if groups is None:
            return set()
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise SignInRefused(
                403,
                f"The sign-in provider sent the claim {self.groups_claim!r} "
                "(auth.oidc.groups_claim) in a shape this site cannot read: it must be a "
                "list of group names. Tell the site's admins.",
            )
        # Names are kept as sent: shortening Keycloak's full paths (/a/physics) could merge
        # two different groups into one.
        return set(groups)


def oidc_authenticator_config(site: Site, discovery: ProviderEndpoints) -> dict[str, Any]:
    """The traits of ``KioskOIDCAuthenticator`` for ``site`` (pure)."""
    oidc = site.auth.oidc
    if oidc is None:
        raise ValueError("oidc_authenticator_config needs auth.oidc")
    return {
        "KioskOIDCAuthenticator": {
            "authorize_url": discovery.authorize_url,
            "token_url": discovery.token_url,
            "userdata_url": discovery.userinfo_url,
            "client_id": oidc.client_id,
            "client_secret_env": oidc.client_secret_env,
            "oauth_callback_url": site.hub.url + CALLBACK_PATH,
            "scope": list(oidc.scopes),
            "enable_pkce": True,
            "username_claim": oidc.username_claim,
            "groups_claim": oidc.groups_claim,
            "manage_groups": True,
            "allowed_groups": set(oidc.allowed_groups),
            "admin_groups": set(oidc.admin_groups),
            "allow_all": oidc.allow_all,
            "admin_users": set(site.hub.admin_users),
            "login_service": oidc.button_label,
            "reserved_usernames": set(RESERVED_USERNAMES),
        }
    }
