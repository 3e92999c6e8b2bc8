"""Who may read the hub's Prometheus metrics: tokens with ``read:metrics``, and a token for
Prometheus that holds nothing else.

JupyterHub serves its own metrics and KioskHub's (``kioskhub.spawner.metrics``) at
``/hub/metrics``, only to a token with the ``read:metrics`` scope (``authenticate_prometheus``,
kept on). The hub registers an API-only service ``prometheus`` whose token, generated once
into the state folder as ``metrics-token`` (0600, root's), has a role with that one scope:
it can read the metrics and nothing else (no users, no servers, no other service).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

METRICS_SERVICE = "prometheus"
METRICS_ROLE = "kioskhub-metrics"
METRICS_SCOPES = ["read:metrics"]
METRICS_TOKEN_FILE = "metrics-token"


def prepare_metrics_token(state_dir: Path) -> str:
    """The metrics token of the state folder, generated (0600) on first use."""
    path = state_dir / METRICS_TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, encoding="ascii") as handle:
            token = handle.read().strip()
        if token:
            return token
        raise RuntimeError(f"{path} is empty: remove it, and the hub makes a new token") from None
    token = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    return token


def metrics_hub_settings(token: str) -> dict[str, Any]:
    """Keep ``/hub/metrics`` behind ``read:metrics``; give ``token`` that scope alone."""
    settings: dict[str, Any] = {"JupyterHub": {"authenticate_prometheus": True}}
    if not token:
        return settings
    settings["JupyterHub"]["services"] = [{"name": METRICS_SERVICE, "api_token": token}]
    settings["JupyterHub"]["load_roles"] = [
        {
            "name": METRICS_ROLE,
            "description": "Prometheus: read the hub's metrics, nothing else",
            "services": [METRICS_SERVICE],
            "scopes": METRICS_SCOPES,
        }
    ]
    return settings
