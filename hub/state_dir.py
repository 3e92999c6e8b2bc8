"""The hub's state folder: database, cookie secret, and the passwords and auth-state key
generated on first run."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from kioskhub.hub.schema.site import Site

from .metrics_access import prepare_metrics_token

SECRETS_FILE = "secrets.json"


@dataclass(frozen=True)
class Passwords:
    """The passwords in force: from the site config where set, else generated once."""

    user: str
    admin: str
    auth_state_key: str = ""
    """Hex key that encrypts JupyterHub's auth state (the users' provider tokens)."""
    metrics_token: str = ""
    """Prometheus's token: ``read:metrics`` only (``metrics_access``); '' for none."""


def prepare_state_dir(site: Site) -> Passwords:
    """Create the state folder and return the passwords, generating missing ones.

    The folder is 0711: user accounts may pass through it to their homes, but not list
    it; the secrets inside are 0600.
    """
    state = site.hub.state_dir
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o711)
    database = state / "jupyterhub.sqlite"
    database.touch(mode=0o600)
    os.chmod(database, 0o600)
    stored = _read_secrets(state / SECRETS_FILE)
    generated = {
        "user_password": stored.get("user_password") or secrets.token_urlsafe(9),
        "admin_password": stored.get("admin_password") or secrets.token_urlsafe(32),
        "auth_state_key": stored.get("auth_state_key") or secrets.token_hex(32),
    }
    if generated != stored:
        _write_secrets(state / SECRETS_FILE, generated)
    return Passwords(
        user=site.auth.shared_password or generated["user_password"],
        admin=site.auth.admin_password or generated["admin_password"],
        auth_state_key=generated["auth_state_key"],
        metrics_token=prepare_metrics_token(state),
    )


def _read_secrets(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_secrets(path: Path, values: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=2)
    os.replace(tmp, path)
