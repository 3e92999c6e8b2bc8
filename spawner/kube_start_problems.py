"""Why a server's pod has not started, in words for its user: pure.

KubeSpawner waits for a pod to run and, when it does not, says only that it "did not start
in N seconds". The cluster knows why, in the pod's status and events: its image cannot be
pulled (``ErrImagePull``, ``ImagePullBackOff``, ...), or no node can take it
(``PodScheduled`` false, ``Unschedulable``, with kube-scheduler's reason). These functions
turn that into a message that names the problem and what to do, for the spawn page.
"""

from __future__ import annotations

from typing import Any

PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")


def _waiting(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(image, waiting state) of each container that waits."""
    found = []
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting:
            found.append((status.get("image", ""), waiting))
    return found


def _pull_failure_detail(image: str, waiting: dict[str, Any], events: list[dict]) -> str:
    """The kubelet's own words for the failed pull: its latest 'Failed to pull' event."""
    prefix = f'Failed to pull image "{image}": '
    for event in reversed(events):
        if event.get("reason") == "Failed" and (event.get("message") or "").startswith(prefix):
            return event["message"].removeprefix(prefix)
    return waiting.get("message") or waiting["reason"]


def image_problem(pod: dict[str, Any] | None, events: list[dict]) -> str | None:
    """The message for a pod whose image cannot be pulled; None if that is not the case."""
    for image, waiting in _waiting(pod or {}):
        if waiting.get("reason") in PULL_FAILURES:
            detail = _pull_failure_detail(image, waiting, events)
            return (
                f"Your server could not start: the cluster cannot pull the image {image} "
                f"({waiting['reason']}: {detail}). Choose another environment, or ask the "
                "site's admins to check that this image exists and that the cluster's nodes "
                "may pull it."
            )
    return None


def scheduling_problem(pod: dict[str, Any] | None, profile: str) -> str | None:
    """The message for a pod that no node can take; None if that is not the case."""
    for condition in ((pod or {}).get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return (
                f"Your server could not start: no node of the cluster can run the profile "
                f"{profile} now ({condition.get('message', 'Unschedulable')}). Choose a "
                "smaller profile, or try again later; the site's admins can tell whether "
                "nodes for this profile exist."
            )
    return None
