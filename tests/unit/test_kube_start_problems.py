"""Why a pod has not started, from its status and events, in words for its user."""

from __future__ import annotations

from kioskhub.spawner.kube_start_problems import image_problem, scheduling_problem

IMAGE = "localhost:5000/lab/env:1"


def waiting_pod(reason: str, message: str) -> dict:
    return {"status": {"phase": "Pending", "containerStatuses": [
        {"name": "notebook", "image": IMAGE, "ready": False,
         "state": {"waiting": {"reason": reason, "message": message}}}]}}


def event(reason: str, message: str) -> dict:
    return {"reason": reason, "message": message, "type": "Warning"}


def test_a_pull_back_off_is_explained_with_the_kubelets_last_pull_error():
    pod = waiting_pod("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"')
    events = [
        event("Failed", f'Failed to pull image "{IMAGE}": first error'),
        event("Failed", "Error: ErrImagePull"),
        event("Failed", f'Failed to pull image "{IMAGE}": manifest unknown'),
        event("Failed", "Error: ImagePullBackOff"),
    ]

    assert image_problem(pod, events) == (
        f"Your server could not start: the cluster cannot pull the image {IMAGE} "
        "(ImagePullBackOff: manifest unknown). Choose another environment, or ask the "
        "site's admins to check that this image exists and that the cluster's nodes may "
        "pull it."
    )


def test_without_events_the_status_message_is_the_detail():
    pod = waiting_pod("ErrImagePull", "connection refused")

    assert "(ErrImagePull: connection refused)" in image_problem(pod, [])


def test_a_pod_that_is_creating_or_running_has_no_image_problem():
    assert image_problem(waiting_pod("ContainerCreating", ""), []) is None
    assert image_problem({"status": {"phase": "Running", "containerStatuses": [
        {"image": IMAGE, "state": {"running": {}}}]}}, []) is None
    assert image_problem(None, []) is None


def test_an_unschedulable_pod_is_explained_with_the_schedulers_reason():
    reason = "0/2 nodes are available: 1 Insufficient nvidia.com/gpu."
    pod = {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": reason}]}}

    assert scheduling_problem(pod, "8 GPUs") == (
        "Your server could not start: no node of the cluster can run the profile 8 GPUs now "
        f"({reason}). Choose a smaller profile, or try again later; the site's admins can "
        "tell whether nodes for this profile exist."
    )
    scheduled = {"status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}}
    assert scheduling_problem(scheduled, "small") is None
    assert scheduling_problem(None, "small") is None
