"""A real OpenID Connect provider (npm ``oidc-provider``) on a free loopback port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from tests.support.hub_process import REPO, free_port, start_hub, write_site_config

SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
PACKAGE = REPO / "node_modules" / "oidc-provider"
CLIENT_ID = "kioskhub"
CLIENT_SECRET = "a-long-client-secret-for-tests"
ACCESS_TOKEN_TTL = 20
USERS = {
    "ada-oidc": {
        "preferred_username": "ada-oidc",
        "name": "Ada",
        "groups": ["physics"],
        "uidNumber": 51001,
        "gidNumber": 51000,
    },
    "grace-oidc": {
        "preferred_username": "grace-oidc",
        "name": "Grace",
        "groups": ["chemistry"],
        "uidNumber": 51002,
        "gidNumber": 51002,
    },
    "rooty": {"preferred_username": "root", "groups": ["physics"]},
    "nameless": {"name": "No Username", "groups": ["physics"]},
    "listy": {"preferred_username": ["ada-oidc", "grace-oidc"], "groups": ["physics"]},
}
"""Accounts at the provider (the login name at its page → the claims it releases)."""


@dataclass
class OIDCProvider:
    issuer: str
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_oidc_provider(redirect_uris: list[str], folder: Path) -> OIDCProvider:
    """Start the provider with a static client for ``redirect_uris``; wait until it answers."""
    node = shutil.which("node")
    if node is None or not PACKAGE.is_dir():
        raise RuntimeError(
            "the OIDC tests need Node.js and the npm package oidc-provider: run "
            "`make node_modules/.installed` (npm ci) in the checkout"
        )
    port = free_port()
    setup = folder / "oidc-provider.json"
    setup.write_text(
        json.dumps(
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": redirect_uris,
                "access_token_ttl": ACCESS_TOKEN_TTL,
                "users": USERS,
            }
        )
    )
    log = folder / "oidc-provider.log"
    process = subprocess.Popen(
        [node, str(SCRIPT), str(port), str(setup)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    provider = OIDCProvider(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"oidc-provider exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            url = f"{provider.issuer}/.well-known/openid-configuration"
            if requests.get(url, timeout=2).status_code == 200:
                return provider
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    raise TimeoutError(f"oidc-provider did not answer within 30 s:\n{log.read_text()}")


def stop_oidc_provider(provider: OIDCProvider) -> None:
    provider.process.terminate()
    try:
        provider.process.wait(10)
    except subprocess.TimeoutExpired:
        provider.process.kill()


def provider_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="kioskhub-oidc-"))


SECRET_ENV = "KIOSKHUB_OIDC_CLIENT_SECRET"


def oidc_site_config(
    folder: Path, start_provider, allowed_groups=("physics",), identity=None, **overrides
) -> Path:
    """A site config on free ports signing in with a provider (started by
    ``start_provider(redirect_uris)``) that knows the hub's callback, plus the password form."""
    hub = yaml.safe_load(write_site_config(folder).read_text())["hub"]
    provider = start_provider([hub["url"] + "/hub/oidc/oauth_callback"])
    auth = {
        "type": "oidc",
        "also": ["shared-password"],
        "oidc": {
            "issuer": provider.issuer,
            "client_id": CLIENT_ID,
            "scopes": ["openid", "profile", "groups", "lab"],
            "allowed_groups": list(allowed_groups),
        },
        **({"identity": identity} if identity else {}),
    }
    return write_site_config(folder, hub=hub, auth=auth, **overrides)


def admin_token_by_password(hub) -> str:
    """An API token of the admin, signed in with the password form beside the provider."""
    secrets = json.loads((hub.config.parent / "state" / "secrets.json").read_text())
    admin = requests.Session()
    admin.get(f"{hub.url}/hub/login", timeout=30)
    admin.post(
        f"{hub.url}/hub/shared-password/login",
        data={
            "username": "admin",
            "password": secrets["admin_password"],
            "_xsrf": admin.cookies.get("_xsrf"),
        },
        timeout=30,
    ).raise_for_status()
    reply = admin.post(
        f"{hub.url}/hub/api/users/admin/tokens",
        json={"note": "OIDC tests"},
        headers={"X-XSRFToken": admin.cookies.get("_xsrf")},
        timeout=30,
    )
    reply.raise_for_status()
    return reply.json()["token"]


@contextmanager
def hub_with_client_secret(config: Path, log: Path, secret: str = CLIENT_SECRET):
    """A hub started with ``secret`` as its OIDC client secret; stopped afterwards."""
    os.environ[SECRET_ENV] = secret
    try:
        hub = start_hub(config, log)
        try:
            yield hub
        finally:
            if hub.process.poll() is None:
                hub.stop()
    finally:
        os.environ.pop(SECRET_ENV, None)
