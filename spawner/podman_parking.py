"""The podman commands of parked pods (``parked_pods``): look, sweep, remove.

Thin I/O; the choices are ``parked_pods``'s. A restarted hub finds its parked pods by their
labels: the next start of their user uses or removes the pod under the user's pod name,
and every park sweeps the hub's parked pods whose waiter has exited (past its deadline).
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from .parked_handover import remove_handover_folder
from .parked_pods import PARKED_LAUNCH, FoundPod, found_pod, sweepable
from .podman_cli import run_podman

log = logging.getLogger(__name__)


async def image_id(image: str) -> str:
    """The ID of ``image`` in podman's storage ('' if podman cannot say)."""
    found = await run_podman("image", "inspect", "--format", "{{.Id}}", image, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


async def inspect_pod(pod: str) -> FoundPod | None:
    """The pod named ``pod``, or None when there is none."""
    found = await run_podman("pod", "inspect", "--format", "json", pod, check=False)
    if found.returncode != 0:
        return None
    inspected = json.loads(found.stdout)
    return found_pod(inspected[0] if isinstance(inspected, list) else inspected)


async def remove_parked(state_dir: Path, pod: str) -> None:
    """Remove the pod and its hand-over folder."""
    await run_podman("pod", "rm", "--force", "--ignore", "--time", "0", pod, check=False)
    await asyncio.to_thread(remove_handover_folder, state_dir, pod)


async def sweep_parked(state_dir: Path, tag: str) -> list[str]:
    """Remove this hub's parked pods whose waiter has exited; their names."""
    listed = await run_podman(
        "pod", "ps", "--filter", f"label=kioskhub/hub={tag}",
        "--filter", f"label={PARKED_LAUNCH}", "--format", "json", check=False,
    )  # fmt: skip
    if listed.returncode != 0:
        log.warning("Could not list parked pods: %s", listed.stderr.strip())
        return []
    gone = sweepable(json.loads(listed.stdout or "[]"))
    for pod in gone:
        await remove_parked(state_dir, pod)
    return gone
