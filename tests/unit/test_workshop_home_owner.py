"""The pure choice of whom collecting work and expiry act as inside a participant's home,
per backend: never root, and on podman only the pods' account or a recorded lab identity."""

from __future__ import annotations

import re

import pytest

from kioskhub.hub.workshop_home_owner import (
    HomeOwner,
    HomeOwnerRefused,
    collect_owner,
    has_system_account,
    removal_owner,
    unavailable_reason,
)

PODS = (1000, 100)
ADA = (70001, 70001)


def test_local_homes_are_read_as_their_own_account():
    assert collect_owner("local", 60001, 60002, PODS, None) == HomeOwner(60001, 60002)


def test_podman_homes_are_read_as_the_shared_pods_account():
    assert collect_owner("podman", 1000, 100, PODS, None) == HomeOwner(1000, 100, shared=True)


def test_podman_homes_of_a_lab_identity_are_read_as_that_identity():
    assert collect_owner("podman", 70001, 70001, PODS, ADA) == HomeOwner(70001, 70001)


@pytest.mark.parametrize(
    ("backend", "uid", "gid", "pods", "identity", "message"),
    [
        ("local", 0, 50, PODS, None, "the home belongs to root, not to the participant"),
        ("podman", 0, 100, PODS, None, "the home belongs to root, not to the participant"),
        ("local", 60001, 0, PODS, None, "the home's group is root"),
        ("podman", 1000, 100, (1000, 0), None, "the pods' group (pods.gid) is root"),
        (
            "podman", 4242, 100, PODS, ADA,
            "the home belongs to uid 4242, neither the pods' account (uid 1000) nor the "
            "participant's lab identity: the spawner did not make it",
        ),
        ("kubernetes", 1000, 100, PODS, None, "where homes are volumes of pods"),
    ],
)  # fmt: skip
def test_no_one_else_reads_a_home(backend, uid, gid, pods, identity, message):
    with pytest.raises(HomeOwnerRefused, match=re.escape(message)):
        collect_owner(backend, uid, gid, pods, identity)


def test_a_temporary_home_is_removed_as_its_kh_account_or_the_pods_account():
    assert removal_owner("local", (60001, 60001), PODS) == HomeOwner(60001, 60001)
    assert removal_owner("local", None, PODS) is None
    assert removal_owner("podman", None, PODS) == HomeOwner(1000, 100, shared=True)
    assert removal_owner("kubernetes", None, PODS) is None
    with pytest.raises(HomeOwnerRefused, match="never root"):
        removal_owner("podman", None, (1000, 0))


def test_only_the_local_backend_has_system_accounts_and_kubernetes_no_host_homes():
    assert [has_system_account(b) for b in ("local", "podman", "kubernetes")] == [
        True, False, False,
    ]  # fmt: skip
    assert unavailable_reason("local", "Collecting work") is None
    assert unavailable_reason("podman", "Collecting work") is None
    assert unavailable_reason("kubernetes", "Collecting work") == (
        "Collecting work runs on the local and podman backends only; this site uses "
        "'kubernetes', where homes are volumes of pods. Ask the participants to download "
        "their work, or the site's admins to copy the volumes."
    )
