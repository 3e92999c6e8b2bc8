"""The pods benchmark's split of a pod start by its progress messages (pure)."""

from benchmarks.hub_client import SpawnOutcome
from benchmarks.pods import phases, summary


def outcome(user: str, seconds: float, events: list[dict]) -> SpawnOutcome:
    return SpawnOutcome(user, seconds=seconds, ok=True, events=events)


POD_EVENTS = [
    {"message": "Environment Default (localhost/kioskhub-base:1), profile small", "at": 0.3},
    {"message": "Preparing your home folder", "at": 0.4},
    {"message": "Starting pod kh-1-ada: 1 CPU, 2 GiB", "at": 1.25},
    {"message": "Waiting for JupyterLab to answer", "at": 1.75},
    {"message": "Server ready", "ready": True, "at": 6.5},
]


def test_a_pod_start_splits_into_the_hub_kube_play_and_the_server():
    split = phases(outcome("ada", 7.0, POD_EVENTS))
    assert split == {"prepare": 1.25, "play": 0.5, "server": 5.25}


def test_a_start_without_the_podman_steps_has_no_split():
    local = [{"message": "Starting your server", "at": 0.2}, {"ready": True, "at": 1.0}]
    assert phases(outcome("bob", 1.1, local)) is None
    assert summary([outcome("bob", 1.1, local)])["phases_s"] is None


def test_the_summary_counts_failures_apart_from_the_timed_starts():
    failed = SpawnOutcome("eve", seconds=3.0, ok=False, error="HubError: no")
    found = summary([outcome("ada", 7.0, POD_EVENTS), failed])
    assert found["latencies_s"] == [7.0]
    assert found["failures"] == ["eve: HubError: no"]
    assert found["phases_s"]["server"]["p50"] == 5.25


def test_the_hubs_subprocess_cpu_is_shared_among_the_starts_it_was_measured_over():
    starts = [outcome("ada", 7.0, POD_EVENTS), outcome("bob", 5.0, POD_EVENTS)]
    assert summary(starts, 3.0)["hub_subprocess_cpu_s_per_start"] == 1.5
    assert summary(starts)["hub_subprocess_cpu_s_per_start"] is None
