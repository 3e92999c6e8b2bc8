"""Parked pods: a user's pod made ahead for their next start, its server imported. Pure.

When a user's server stops and ``pods.park_minutes`` is set, the podman backend makes the
pod of that same launch again (image, account, limits, home and data mounts, a new
loopback port) with a different command: ``WAITER``, a Python that imports what
``jupyterhub-singleuser`` imports and then waits, holding nothing of any start (no token,
no URLs: the manifest's environment is the choice's alone). The next start whose launch is
the same (``launch_key``) writes the start's environment and the server's arguments into
the pod's hand-over folder (``parked_handover``); the waiter puts them into its
environment and ``sys.argv`` and runs ``jupyterhub-singleuser``'s own ``main``. A start
whose launch differs, or that finds the waiter gone, removes the pod and plays a fresh one.

The pod carries its deadline as a label; the waiter exits by itself when it passes (so a
parked pod frees its memory even while the hub is down), and the hub removes parked pods
whose server is no longer running (``sweepable``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .pod_image import SERVER_EXTENSIONS
from .pod_manifest import CONTAINER_NAME, LABEL_PREFIX

HANDOVER_MOUNT = PurePosixPath("/run/kioskhub-handover")
"""Where a parked pod sees its hand-over folder (read-only; root writes it on the host)."""
HANDOVER_FILE = "start.json"
HANDOVER_VOLUME = "kioskhub-handover"
PARKED_UNTIL = f"{LABEL_PREFIX}/parked-until"
PARKED_LAUNCH = f"{LABEL_PREFIX}/parked-launch"
PARKED_PORT = f"{LABEL_PREFIX}/parked-port"
PARKED_MESSAGE = "Using the pod parked for you"
WAITING = "Parked: the server is imported, waiting for its start"
"""What the waiter prints once its imports are done (in the pod's log)."""
GONE = ("exited", "stopped", "dead")
"""States of a parked pod's server container that has exited."""
WAIT_INTERVAL = 0.05
"""Seconds between the waiter's looks for its hand-over file (a stat each)."""
SERVER_IMPORTS = ("jupyter_server.serverapp", "jupyter_server.extension.application",
                  "jupyterlab.labapp", "jupyterhub.services.auth", "jupyterhub.utils",
                  "jupyterhub.log", "jupyterhub.httpclient", *SERVER_EXTENSIONS)  # fmt: skip
"""What the waiter imports ahead: the server, JupyterLab, KioskHub's server extensions and
what ``jupyterhub.singleuser`` builds on, but not that package itself: it picks its
application from the environment when imported (and its legacy application patches the
server's handlers), so it is imported once the start's environment is in place."""

WAITER = f"""\
import importlib, json, os, sys, time
deadline = float(sys.argv[1])
for name in {list(SERVER_IMPORTS)!r}:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
print({WAITING!r}, flush=True)
path = os.path.join({str(HANDOVER_MOUNT)!r}, {HANDOVER_FILE!r})
while not os.path.exists(path):
    if time.time() > deadline:
        sys.exit(0)
    time.sleep({WAIT_INTERVAL!r})
with open(path) as handed:
    start = json.load(handed)
os.environ.update(start["env"])
sys.argv = start["argv"]
from jupyterhub.singleuser import main
sys.exit(main())
"""
"""The parked pod's program: once handed its start, it runs what ``jupyterhub-singleuser``
runs, with the same environment and arguments."""


def waiter_command(until: int) -> tuple[str, ...]:
    """The parked container's command: the image's Python running ``WAITER`` until ``until``."""
    return ("python3", "-c", WAITER, str(until))


def handover_document(env: dict[str, str], argv: tuple[str, ...]) -> bytes:
    """What the waiter reads: the start's environment and ``jupyterhub-singleuser``'s argv."""
    return json.dumps({"env": env, "argv": ["jupyterhub-singleuser", *argv]}).encode()


def launch_key(parked_manifest: dict[str, Any], image_id: str) -> str:
    """The identity of one exact launch: the parked pod's manifest without its deadline
    and port, and the image's ID (a rebuilt tag is another launch)."""
    manifest = json.loads(json.dumps(parked_manifest))
    labels = manifest["metadata"].get("labels", {})
    for key in (PARKED_UNTIL, PARKED_LAUNCH, PARKED_PORT):
        labels.pop(key, None)
    for container in manifest["spec"]["containers"]:
        container["args"] = container["args"][:-1]  # the waiter's deadline
        for port in container.get("ports", []):
            port.pop("hostPort", None)
    text = json.dumps([manifest, image_id], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parked_manifest(
    pod: dict[str, Any], handover_folder: str, until: int, host_port: int
) -> dict[str, Any]:
    """``pod`` (a manifest whose command is ``waiter_command(until)`` and whose environment
    holds no start's values) with the hand-over folder mounted read-only and the parking
    labels; the launch label is added by ``with_launch_label``."""
    manifest = json.loads(json.dumps(pod))
    manifest["metadata"]["labels"] |= {PARKED_UNTIL: str(until), PARKED_PORT: str(host_port)}
    spec = manifest["spec"]
    spec["volumes"] = [
        *spec.get("volumes", []),
        {"name": HANDOVER_VOLUME, "hostPath": {"path": handover_folder, "type": "Directory"}},
    ]
    for container in spec["containers"]:
        if container["name"] == CONTAINER_NAME:
            container["volumeMounts"] = [
                *container.get("volumeMounts", []),
                {"name": HANDOVER_VOLUME, "mountPath": str(HANDOVER_MOUNT), "readOnly": True},
            ]
    return manifest


def with_launch_label(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    labelled = json.loads(json.dumps(manifest))
    labelled["metadata"]["labels"][PARKED_LAUNCH] = key
    return labelled


@dataclass(frozen=True)
class FoundPod:
    """What ``podman pod inspect`` says of a pod under the user's pod name."""

    labels: dict[str, str]
    server_running: bool


def unusable_reason(found: FoundPod | None, key: str, now: float) -> str | None:
    """None if ``found`` is a parked pod this launch can use; else why not ('' when there
    is no parked pod at all)."""
    if found is None or PARKED_LAUNCH not in found.labels:
        return ""
    if found.labels[PARKED_LAUNCH] != key:
        return "it was parked for another environment, profile or image"
    if not found.server_running:
        return "its waiting server is gone"
    try:
        until, port = float(found.labels[PARKED_UNTIL]), int(found.labels[PARKED_PORT])
    except (KeyError, ValueError):
        return "its labels are not a parked pod's"
    if until <= now + 1 or not 0 < port < 65536:
        return "its parking time is up"
    return None


def found_pod(inspected: dict[str, Any]) -> FoundPod:
    """``FoundPod`` from one pod of ``podman pod inspect --format json``."""
    running = any(
        c.get("Name", "").endswith(f"-{CONTAINER_NAME}") and c.get("State") == "running"
        for c in inspected.get("Containers") or ()
    )
    return FoundPod(labels=dict(inspected.get("Labels") or {}), server_running=running)


def sweepable(listed: list[dict[str, Any]]) -> list[str]:
    """Names of parked pods (from ``podman pod ps --format json``) whose server has exited:
    its waiter reached its deadline, or died. A pod still being made, or a parked pod that
    was used and runs its server, stays."""
    names = []
    for pod in listed:
        if PARKED_LAUNCH not in (pod.get("Labels") or {}):
            continue
        notebook = [
            c for c in pod.get("Containers") or () if c.get("Names", "").endswith(CONTAINER_NAME)
        ]
        if any(c.get("Status") in GONE for c in notebook):
            names.append(pod["Name"])
    return names
