"""Whom a user's Dask cluster runs as: their kh- account, or their server's lab identity.

``UserAccountsMixin`` puts this into KioskHub's local backend (processes and containers).
On a site with the default ``auth.identity.source`` ``accounts``, a cluster runs as the
user's system account (``kh-<user>``), which their first server start created.

With ``claims`` or ``nss``, a user's clusters run as exactly the identity their server runs
as: its uid, primary gid and supplementary gids. The gateway cannot resolve that identity
itself (it has no scope to read auth state), and must not believe anything the user's
server or environment says, so it reads what the spawner recorded, as root, when the
server started (``kioskhub.spawner.identity_record``), and checks it again against the
site's rules (``min_id``, the reserved ranges). The identity is resolved once, when the
cluster is created, and kept in the cluster's config (``run_as``): its processes run as it
whatever is recorded later.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
from typing import Any

from dask_gateway_server.backends.base import PublicException

from kioskhub.hub.schema.site import Site
from kioskhub.spawner.identity_record import RecordError, read_record
from kioskhub.spawner.lab_identity import IdentityError, checked_identity, reserved_ranges
from kioskhub.spawner.local_plan import Account

log = logging.getLogger("DaskGateway")

NO_RECORD = (
    "Start your server first: your Dask clusters run as your server's identity, which "
    "the hub records when your server starts (if your server runs since before the hub's "
    "last upgrade, stop and start it once)."
)
DAMAGED_RECORD = (
    "Your Dask clusters cannot start: the hub's record of your server's identity cannot be "
    "trusted. Ask the site's admins to look at the gateway's log."
)


def uses_lab_identities(site: Site | None) -> bool:
    """Whether ``site`` runs servers as lab identities (``claims`` or ``nss``)."""
    return site is not None and site.auth.identity.source != "accounts"


def recorded_identity(site: Site, username: str) -> dict[str, Any]:
    """The identity ``username``'s server was started as, checked again against the site's
    rules, as a cluster's ``run_as``; PublicException if there is none or it is refused.
    Blocking (reads a file): call it in a thread."""
    try:
        identity = read_record(site.hub.state_dir, username)
    except RecordError as error:
        log.error("Refusing the identity record of %s: %s", username, error)
        raise PublicException(DAMAGED_RECORD) from None
    if identity is None:
        raise PublicException(NO_RECORD)
    settings = site.auth.identity
    try:
        identity = checked_identity(
            identity.uid,
            identity.gid,
            identity.supplementary_gids,
            identity.name,
            settings.min_id,
            reserved_ranges(site.builder),
        )
    except IdentityError as error:
        raise PublicException(str(error)) from None
    return {
        "name": identity.name,
        "uid": identity.uid,
        "gid": identity.gid,
        "groups": list(identity.supplementary_gids),
    }


def run_as_account(run_as: dict[str, Any]) -> Account:
    """A cluster's ``run_as`` as the account its processes become (exactly its groups)."""
    return Account(run_as["name"], run_as["uid"], run_as["gid"], tuple(run_as["groups"]))


class UserAccountsMixin:
    """For KioskHub's ``KioskBackend`` with a ``LocalBackend``: the account each cluster's
    processes become, its folder's owner, and its ``USER`` and ``HOME``."""

    def account(self, username: str) -> pwd.struct_passwd:
        name = f"{self.account_prefix}{username}"
        try:
            return pwd.getpwnam(name)
        except KeyError:
            raise PublicException(
                f"The system account {name} does not exist yet: start your server once "
                "from the hub, then create the cluster."
            ) from None

    @property
    def site(self):
        """The site config (``site_config``), or None where none is named."""
        return self.environments.site if self.environments else None

    async def check_account(self, username: str, config) -> None:
        """With lab identities, the identity the user's server runs as, kept in
        ``config.run_as``; else the kh- account, which must exist."""
        if uses_lab_identities(self.site):
            config.run_as = await asyncio.to_thread(recorded_identity, self.site, username)
        else:
            self.account(username)

    def runs_as(self, cluster) -> Account:
        """The lab identity recorded when ``cluster`` was created, or the kh- account."""
        if cluster.config.get("run_as"):
            return run_as_account(cluster.config["run_as"])
        return super().runs_as(cluster)

    def get_env(self, cluster):
        env = super().get_env(cluster)
        account = self.runs_as(cluster)
        if cluster.config.get("run_as"):
            home = os.path.join(self.homes_directory, cluster.username)
        else:
            home = self.home(cluster.username)
        env.update(USER=account.name, LOGNAME=account.name, HOME=home)
        return env

    def home(self, username: str) -> str:
        """The user's home on this site; the account's own (passwd) when it has none yet.

        The passwd entry names the home of the site that made the account first, which
        another site on the same machine must not write into.
        """
        site_home = os.path.join(self.homes_directory, username) if self.homes_directory else ""
        if site_home and os.path.isdir(site_home):
            return site_home
        return self.account(username).pw_dir

    def make_preexec_fn(self, cluster):  # pragma: no cover (runs in the child)
        account = self.runs_as(cluster)
        if account.groups is None:
            groups = [g.gr_gid for g in grp.getgrall() if account.name in g.gr_mem]
        else:
            groups = list(account.groups)
        groups += cluster.config.get("environment_groups", [])
        workdir = cluster.state["workdir"]

        def preexec():
            os.setgid(account.gid)
            os.setgroups(groups)
            os.setuid(account.uid)
            os.chdir(workdir)

        return preexec
