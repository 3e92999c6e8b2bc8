"""A pod's status as the kubelet reports it, from what podman says: pure.

``container_status`` turns podman's view of a container (``ContainerState``) into the API's
ContainerStatus (running, terminated with its exit code and reason, or waiting);
``waiting_status`` is a container that waits for a reason of the kubelet's (ErrImagePull,
ImagePullBackOff, ...); ``pull_policy`` is a container's imagePullPolicy as the API server
defaults it.
"""

from __future__ import annotations

from .podman_runtime import ContainerState


def pull_policy(container: dict) -> str:
    """The container's imagePullPolicy, defaulted as the API server defaults it."""
    if container.get("imagePullPolicy"):
        return container["imagePullPolicy"]
    image = container["image"]
    tag = image.rpartition("/")[2].partition("@")[0]
    return "Always" if ":" not in tag or tag.endswith(":latest") else "IfNotPresent"


def container_status(container: dict, state: ContainerState) -> dict:
    """The API's ContainerStatus of ``container`` from what podman says of it."""
    if state.status == "running":
        shown = {"running": {"startedAt": state.started_at}}
    elif state.status in ("exited", "stopped"):
        reason = "OOMKilled" if state.oom_killed else "Completed" if state.exit_code == 0 \
            else "Error"
        shown = {"terminated": {"exitCode": state.exit_code, "reason": reason,
                                "startedAt": state.started_at, "finishedAt": state.finished_at,
                                "containerID": f"podman://{state.container_id}"}}
    elif state.status == "missing":
        shown = {"terminated": {"exitCode": 137, "reason": "ContainerStatusUnknown",
                                "message": "The container could not be located when the pod "
                                           "was terminated"}}
    else:
        shown = {"waiting": {"reason": "ContainerCreating"}}
    status = {
        "name": container["name"],
        "image": container["image"],
        "imageID": f"sha256:{state.image_id}" if state.image_id else "",
        "ready": state.status == "running",
        "started": state.status == "running",
        "restartCount": state.restarts,
        "state": shown,
    }
    if state.container_id:
        status["containerID"] = f"podman://{state.container_id}"
    return status


def waiting_status(container: dict, reason: str, message: str) -> dict:
    return {"name": container["name"], "image": container["image"], "imageID": "",
            "ready": False, "started": False, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": message}}}
