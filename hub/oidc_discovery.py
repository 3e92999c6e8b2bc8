"""OpenID Connect discovery: the provider's endpoints from its well-known configuration.

oauthenticator takes the authorize, token and userinfo URLs one by one; KioskHub reads them
from ``<issuer>/.well-known/openid-configuration`` itself, once, when the hub starts and in
``kioskhub check-config``. Every failure names the issuer and what went wrong, so a site
admin can fix the URL or the network.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

WELL_KNOWN = "/.well-known/openid-configuration"
REQUIRED = {
    "authorization_endpoint": "authorize",
    "token_endpoint": "token",
    "userinfo_endpoint": "userinfo",
}


class DiscoveryError(Exception):
    """The provider's configuration could not be read; the message says why and what to do."""


@dataclass(frozen=True)
class ProviderEndpoints:
    """Where the hub sends the browser (authorize) and where it asks for tokens and claims."""

    issuer: str
    authorize_url: str
    token_url: str
    userinfo_url: str
    end_session_url: str | None = None


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + WELL_KNOWN


def parse_discovery(issuer: str, body: bytes) -> ProviderEndpoints:
    """The endpoints in a discovery document, checked against the configured ``issuer``."""
    where = f"the OIDC provider's configuration at {discovery_url(issuer)}"
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DiscoveryError(
            f"{where} is not JSON: check auth.oidc.issuer (it should be the URL that "
            "the provider calls its issuer, e.g. https://login.example.org/realms/lab)"
        ) from None
    if not isinstance(document, dict):
        raise DiscoveryError(f"{where} is not a JSON object: check auth.oidc.issuer")
    announced = document.get("issuer")
    if not isinstance(announced, str) or announced.rstrip("/") != issuer.rstrip("/"):
        raise DiscoveryError(
            f"{where} names the issuer {str(announced)[:200]!r}, not {issuer!r}: set "
            "auth.oidc.issuer to exactly the provider's issuer"
        )
    missing = [key for key in REQUIRED if not _is_http_url(document.get(key))]
    if missing:
        raise DiscoveryError(
            f"{where} lacks {', '.join(missing)}: KioskHub needs an OpenID Connect provider "
            "with the authorization code flow and a userinfo endpoint"
        )
    end_session = document.get("end_session_endpoint")
    return ProviderEndpoints(
        issuer=issuer,
        authorize_url=document["authorization_endpoint"],
        token_url=document["token_endpoint"],
        userinfo_url=document["userinfo_endpoint"],
        end_session_url=end_session if _is_http_url(end_session) else None,
    )


def discover(issuer: str, timeout: float = 10) -> ProviderEndpoints:
    """Read and check the provider's discovery document (blocking: call before the hub's
    event loop runs, or in a thread)."""
    url = discovery_url(issuer)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:  # noqa: S310 (https or loopback, checked by the schema)
            body = reply.read(1_000_000)
    except urllib.error.HTTPError as error:
        raise DiscoveryError(
            f"the OIDC provider at {issuer} answered {error.code} for {url}: check "
            "auth.oidc.issuer (for Keycloak it ends in /realms/<realm>)"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise DiscoveryError(
            f"cannot reach the OIDC provider at {issuer} ({url}): {reason}. Check "
            "auth.oidc.issuer and that this machine reaches the provider"
        ) from None
    return parse_discovery(issuer, body)


def _is_http_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def discover_for_site(site, environ: dict[str, str]) -> ProviderEndpoints | None:
    """The OIDC provider's endpoints where the site signs in with OIDC, else None.

    Also checks that the client secret's environment variable is set. Raises DiscoveryError.
    """
    oidc = site.auth.oidc
    if "oidc" not in site.auth.methods() or oidc is None:
        return None
    if not environ.get(oidc.client_secret_env):
        raise DiscoveryError(
            f"auth.oidc.client_secret_env names {oidc.client_secret_env}, which is not set: "
            "export the OIDC client's secret in that variable before starting the hub"
        )
    return discover(oidc.issuer)
