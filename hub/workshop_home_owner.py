"""Whom collecting work and expiry act as inside a participant's home: the owner the
spawner gave that home.

Root never works inside a home; a child process that has become the home's owner does
(``workshop_collect``'s tar, ``workshop_home_removal``'s emptying), so the kernel checks
every file it opens. Who that owner is depends on the backend:

- ``local``: each participant's server runs as an account of its own (a ``kh-`` account,
  or the participant's lab identity), which owns ``<home.root>/<username>``;
- ``podman``: the home is a host folder bound into the pod, prepared and owned by the
  pods' account (``pods.uid``/``gid``), or by the participant's lab identity. The pods'
  account owns *every* participant's home, so the kernel does not keep participants
  apart: only the home that was opened and checked may be worked in, nothing is
  followed out of it, and the shared temporary folders are not swept for that uid;
- ``kubernetes``: homes are volumes of pods, not folders of this machine: refused.

The choices (``collect_owner``, ``removal_owner``) are pure; ``collect_owner_of``
and ``temporary_home_owner`` are the thin I/O that feed them.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass

from kioskhub.hub.schema.site import Site
from kioskhub.spawner import identity_record
from kioskhub.spawner.local_accounts import account_name

HOST_HOME_BACKENDS = ("local", "podman")
"""Backends whose homes are folders of this machine, under ``home.root``."""


class HomeOwnerRefused(Exception):
    """No one may act inside this home; the message says why and what to do."""


@dataclass(frozen=True)
class HomeOwner:
    """The uid and gid a child process runs as inside a home.

    ``shared``: other homes belong to the same uid (the pods' account), so that uid's
    entries elsewhere (``/tmp``) are not this participant's to remove.
    """

    uid: int
    gid: int
    shared: bool = False


def unavailable_reason(backend: str, what: str) -> str | None:
    """Why ``what`` (e.g. "Collecting work") cannot run on ``backend``; None if it can."""
    if backend in HOST_HOME_BACKENDS:
        return None
    return (
        f"{what} runs on the local and podman backends only; this site uses {backend!r}, "
        "where homes are volumes of pods. Ask the participants to download their work, "
        "or the site's admins to copy the volumes."
    )


def collect_owner(
    backend: str,
    home_uid: int,
    home_gid: int,
    pods: tuple[int, int],
    identity: tuple[int, int] | None,
) -> HomeOwner:
    """Whom to read the home as, given the owner its ``lstat`` shows.

    Local: that owner (every home has an account of its own). Podman: the pods' account
    or the participant's recorded lab identity, and only if the home belongs to it; a
    home of anyone else was not made by the spawner and is refused. Never root.
    """
    if home_uid == 0:
        raise HomeOwnerRefused("the home belongs to root, not to the participant")
    if home_gid == 0:
        raise HomeOwnerRefused("the home's group is root; nothing is read as root's group")
    if backend == "local":
        return HomeOwner(home_uid, home_gid)
    if backend != "podman":
        raise HomeOwnerRefused(unavailable_reason(backend, "Reading a home"))
    if identity is not None and home_uid == identity[0]:
        return HomeOwner(*identity)
    if home_uid == pods[0]:
        if pods[1] == 0:
            raise HomeOwnerRefused(
                "the pods' group (pods.gid) is root; nothing is read as root's group"
            )
        return HomeOwner(pods[0], pods[1], shared=True)
    raise HomeOwnerRefused(
        f"the home belongs to uid {home_uid}, neither the pods' account (uid {pods[0]}) "
        "nor the participant's lab identity: the spawner did not make it"
    )


def removal_owner(
    backend: str, account: tuple[int, int] | None, pods: tuple[int, int]
) -> HomeOwner | None:
    """Whom a temporary participant's home is emptied as; None: no one. Local: the
    participant's ``kh-`` account (None once it is gone). Podman: the pods' account
    (temporary participants never have a lab identity). Kubernetes: None, the home is a
    volume of the cluster, not a folder here. Never root."""
    owner = None
    if backend == "local" and account:
        owner = HomeOwner(*account)
    elif backend == "podman":
        owner = HomeOwner(pods[0], pods[1], shared=True)
    if owner is not None and 0 in (owner.uid, owner.gid):
        raise HomeOwnerRefused(
            f"the home's owner would be uid {owner.uid}, gid {owner.gid}: never root; "
            "set pods.gid to a group other than root"
        )
    return owner


def has_system_account(backend: str) -> bool:
    """Whether the spawner made a ``kh-`` system account for each participant."""
    return backend == "local"


# ---- the thin I/O ------------------------------------------------------------------


def home_owner_candidates(site: Site, username: str) -> tuple[tuple[int, int], tuple | None]:
    """The pods' account and ``username``'s recorded lab identity (None: none), for
    ``collect_owner``. Blocking."""
    try:
        identity = identity_record.read_record(site.hub.state_dir, username)
    except identity_record.RecordError:
        identity = None
    recorded = (identity.uid, identity.gid) if identity else None
    return (site.pods.uid, site.pods.gid), recorded


def collect_owner_of(site: Site) -> Callable[[str, os.stat_result], HomeOwner]:
    """``collect_owner`` for ``site``: (username, the home's ``lstat``) → whom to read it
    as, fed the pods' account and the participant's recorded identity. Blocking."""

    def owner_of(username: str, info: os.stat_result) -> HomeOwner:
        pods, identity = home_owner_candidates(site, username)
        return collect_owner(site.spawner.backend, info.st_uid, info.st_gid, pods, identity)

    return owner_of


def temporary_home_owner(site: Site, username: str) -> HomeOwner | None:
    """``removal_owner`` for the temporary participant ``username``. Blocking (NSS)."""
    account = None
    if has_system_account(site.spawner.backend):
        try:
            entry = pwd.getpwnam(account_name(site, username))
            account = (entry.pw_uid, entry.pw_gid)
        except KeyError:
            account = None
    return removal_owner(site.spawner.backend, account, (site.pods.uid, site.pods.gid))
