"""Parked pods: which launch a parked pod serves, what it mounts, and its hand-over folder.

The choices are pure (``parked_pods``); the hand-over writer is root's I/O on a folder of
its own, attacked here with symlinks and files planted where it writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from kioskhub.hub.schema.pods import PodSettings
from kioskhub.spawner.parked_handover import (
    HandoverError,
    clear_handover,
    handover_folder,
    make_handover_folder,
    remove_handover_folder,
    write_handover,
)
from kioskhub.spawner.parked_pods import (
    HANDOVER_MOUNT,
    PARKED_LAUNCH,
    FoundPod,
    found_pod,
    handover_document,
    launch_key,
    parked_manifest,
    sweepable,
    unusable_reason,
    waiter_command,
    with_launch_label,
)
from kioskhub.spawner.pod_manifest import PodTarget, build_pod
from tests.unit.test_pod_manifest import spec

PODS = PodSettings()
FOLDER = "/srv/kioskhub/state/parked/kh-1234abcd-ada"


def parked(until: int = 1000, port: int = 41000, image_id: str = "sha256:aa", **changes):
    launch = spec(**changes)
    pod = build_pod(
        launch,
        PODS,
        PodTarget(
            pod_name="kh-1234abcd-ada",
            home_claim="kh-1234abcd-home-ada",
            image="localhost/kioskhub-base:1",
            command=waiter_command(until),
            publish=("127.0.0.1", port),
        ),
    )
    manifest = parked_manifest(pod, FOLDER, until, port)
    return with_launch_label(manifest, launch_key(manifest, image_id))


def key_of(manifest) -> str:
    return manifest["metadata"]["labels"][PARKED_LAUNCH]


def test_the_same_launch_has_the_same_key_whatever_its_deadline_and_port():
    assert key_of(parked(until=1000, port=41000)) == key_of(parked(until=5000, port=42000))


@pytest.mark.parametrize(
    "changes",
    [
        {"image_id": "sha256:bb"},
        {"memory_bytes": 2**30},
        {"cpu": 1.0},
        {"profile": "large"},
        {"env": {"KIOSKHUB_USER": "ada", "KIOSKHUB_PROFILE": "large"}},
        {"mounts": ()},
        {"username": "bob"},
    ],
)
def test_any_other_launch_has_another_key(changes):
    assert key_of(parked(**changes)) != key_of(parked())


def test_the_parked_pod_holds_nothing_of_a_start_and_mounts_its_handover_folder_read_only():
    manifest = parked(until=1234, port=41000)
    container = manifest["spec"]["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert not [name for name in env if name.startswith("JUPYTERHUB_")], env
    assert container["args"][:2] == ["python3", "-c"]
    assert container["args"][-1] == "1234"
    assert {"name": "kioskhub-handover", "mountPath": str(HANDOVER_MOUNT), "readOnly": True} in (
        container["volumeMounts"]
    )
    assert {"name": "kioskhub-handover", "hostPath": {"path": FOLDER, "type": "Directory"}} in (
        manifest["spec"]["volumes"]
    )
    labels = manifest["metadata"]["labels"]
    assert (labels["kioskhub/parked-until"], labels["kioskhub/parked-port"]) == ("1234", "41000")


def found(key: str, running: bool = True, until: str = "2000", port: str = "41000"):
    labels = {PARKED_LAUNCH: key, "kioskhub/parked-until": until, "kioskhub/parked-port": port}
    return FoundPod(labels=labels, server_running=running)


def test_a_parked_pod_serves_only_its_launch_while_it_waits_and_in_time():
    assert unusable_reason(found("k"), "k", now=1000) is None
    assert unusable_reason(None, "k", now=1000) == ""
    assert unusable_reason(FoundPod({"kioskhub/hub": "x"}, True), "k", now=1000) == ""
    assert "another environment" in unusable_reason(found("other"), "k", now=1000)
    assert "gone" in unusable_reason(found("k", running=False), "k", now=1000)
    assert "time is up" in unusable_reason(found("k", until="1000"), "k", now=1000)
    assert "not a parked pod" in unusable_reason(found("k", port="x"), "k", now=1000)


def test_found_pod_reads_podmans_inspect_output():
    inspected = {
        "Labels": {PARKED_LAUNCH: "k"},
        "Containers": [
            {"Name": "kh-1234abcd-ada-infra", "State": "running"},
            {"Name": "kh-1234abcd-ada-notebook", "State": "exited"},
        ],
    }
    assert found_pod(inspected) == FoundPod({PARKED_LAUNCH: "k"}, server_running=False)


def test_sweep_takes_parked_pods_whose_waiter_exited_and_nothing_else():
    def pod(name, status, parked=True):
        labels = {PARKED_LAUNCH: "k"} if parked else {}
        containers = [{"Names": f"{name}-notebook", "Status": status}]
        return {"Name": name, "Labels": labels, "Containers": containers}

    listed = [
        pod("expired", "exited"),
        pod("waiting", "running"),
        pod("being-made", "created"),
        pod("normal-but-exited", "exited", parked=False),
    ]
    assert sweepable(listed) == ["expired"]


def test_the_handover_document_is_the_starts_env_and_singleuser_argv():
    document = json.loads(handover_document({"JUPYTERHUB_API_TOKEN": "t"}, ("--debug",)))
    assert document == {
        "env": {"JUPYTERHUB_API_TOKEN": "t"},
        "argv": ["jupyterhub-singleuser", "--debug"],
    }


# ---- the hand-over folder: root's writes, attacked ---------------------------------


def test_handover_is_written_whole_into_a_root_folder_the_pod_reads(tmp_path):
    folder = make_handover_folder(tmp_path, "kh-1234abcd-ada")
    assert folder == handover_folder(tmp_path, "kh-1234abcd-ada")
    assert oct(os.stat(tmp_path / "parked").st_mode & 0o777) == "0o700"
    assert oct(os.stat(folder).st_mode & 0o777) == "0o755"
    write_handover(folder, b'{"env": {}}')
    assert (folder / "start.json").read_bytes() == b'{"env": {}}'
    assert sorted(os.listdir(folder)) == ["start.json"]
    clear_handover(folder)
    assert os.listdir(folder) == []


def test_a_symlink_planted_where_the_document_goes_is_never_followed(tmp_path):
    folder = make_handover_folder(tmp_path, "kh-1234abcd-ada")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (folder / ".start.json.new").symlink_to(victim)
    with pytest.raises(HandoverError, match="cannot write"):
        write_handover(folder, b"token")
    os.unlink(folder / ".start.json.new")
    (folder / "start.json").symlink_to(victim)
    with pytest.raises(HandoverError, match="already there"):
        write_handover(folder, b"token")
    assert victim.read_text() == "untouched"
    assert not (folder / ".start.json.new").exists()


def test_a_handover_folder_swapped_for_a_symlink_is_refused_and_removed_unfollowed(tmp_path):
    make_handover_folder(tmp_path, "kh-1234abcd-bob")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("kept")
    swapped = handover_folder(tmp_path, "kh-1234abcd-ada")
    swapped.symlink_to(elsewhere)
    with pytest.raises(HandoverError, match="not a folder root made"):
        write_handover(swapped, b"token")
    assert os.listdir(elsewhere) == ["keep"]
    folder = make_handover_folder(tmp_path, "kh-1234abcd-ada")
    assert not folder.is_symlink() and os.listdir(folder) == []
    assert (elsewhere / "keep").read_text() == "kept"
    remove_handover_folder(tmp_path, "kh-1234abcd-ada")
    assert not folder.exists()


def test_launch_key_ignores_nothing_but_deadline_and_port():
    base = parked()
    changed = dataclasses.replace(spec(), home=Path("/elsewhere/ada"))
    pod = build_pod(
        changed,
        PODS,
        PodTarget("kh-1234abcd-ada", "kh-1234abcd-home-ada", "localhost/kioskhub-base:1",
                  command=waiter_command(1000), publish=("127.0.0.1", 41000)),
    )  # fmt: skip
    manifest = parked_manifest(pod, FOLDER + "-other", 1000, 41000)
    assert launch_key(manifest, "sha256:aa") != key_of(base)
