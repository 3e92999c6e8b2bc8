"""KioskHub's classes inside dask-gateway-server: authenticator, options, limits, accounts.

These run in the gateway service's process (``kioskhub.hub.dask_gateway`` writes the config that
names them). They subclass dask-gateway-server's own classes:

- ``KioskHubAuthenticator`` (``dask_gateway_auth``, named here in the gateway's config):
  JupyterHub's authenticator, refusing users outside the configured groups with a message;
- ``KioskBackend``: cluster options from the site's resource profiles, Dask's own per-user
  limits (clusters, cores, memory) across all of a user's clusters, and the site's quotas
  and usage records, which count servers and clusters together (``dask_cluster_usage``);
- ``KioskLocalBackend``: clusters as the user's system account (``kh-<user>``) or lab
  identity (``dask_cluster_accounts``), used when KioskHub isolates servers, each
  process in a cgroup of its own with the memory and CPU that the cluster counts for it
  (``dask_cluster_cgroups``), all killed when the cluster stops; or, for a server in an
  image on the podman backend, containers of that image (``dask_cluster_containers``);
  ``KioskSharedLocalBackend`` runs processes as the gateway's account.

A cluster runs in the environment its ``environment`` option names (a server's default is
its own), once ``dask_cluster_environments`` has checked that the user may launch it: that
venv's Python runs the scheduler and workers, with a private venv's group.

Both serve dashboards through ``dask_dashboard_proxy`` (the owner only), and the
schedulers' dashboards refuse requests without the cluster's key
(``dask_dashboard_guard``); workers run no dashboard.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import pwd
import time

from dask_gateway_server.backends.base import ClusterConfig, PublicException
from dask_gateway_server.backends.db_base import DBBackendBase
from dask_gateway_server.backends.local import LocalBackend, UnsafeLocalBackend
from dask_gateway_server.options import Options
from traitlets import Dict, List, Type, Unicode, default

from kioskhub.spawner.local_plan import SYSTEM_PATH, Account

from .dask_cluster_accounts import UserAccountsMixin
from .dask_cluster_cgroups import ClusterCgroups
from .dask_cluster_containers import ImageContainersMixin, image_commands
from .dask_cluster_environments import (
    OWN_ENVIRONMENT,
    ClusterEnvironment,
    ClusterEnvironments,
    KioskClusterConfig,
    environment_commands,
)
from .dask_cluster_limits import DaskUserLimits
from .dask_cluster_options import ProfileOptions
from .dask_cluster_usage import ClusterUsage, ProcessGroups, RecordsUsage, cluster_record
from .dask_dashboard_proxy import add_dashboard_routes
from .dask_gateway_auth import KioskHubAuthenticator

__all__ = [
    "KioskHubAuthenticator",
    "KioskBackend",
    "KioskLocalBackend",
    "KioskSharedLocalBackend",
    "open_log",
]


class KioskBackend(DaskUserLimits, DBBackendBase):
    """Cluster options from resource profiles, Dask's limits on all of a user's clusters
    (``dask_cluster_limits``), and the site's quotas and usage records of clusters
    (``dask_cluster_usage``).

    Users pick a ``profile`` (default: their server's profile, set by the server's
    environment); it sets worker cores and memory, the most workers and the idle timeout.
    The ``environment`` (default: their server's) is resolved among those the user may
    launch, read from the site config ``site_config`` (``dask_cluster_environments``).
    """

    cluster_config_class = Type(KioskClusterConfig, klass=ClusterConfig, config=True)
    site_config = Unicode(
        "",
        help="The site config file (kioskhub.yaml): clusters may run in the environments "
        "that their user may launch from it; empty: only in KioskHub's own.",
        config=True,
    )

    profiles = List(
        Dict(),
        help="Resource profiles: name, groups, worker_cores, worker_memory, max_workers, "
        "idle_timeout.",
        config=True,
    )
    default_profile = Unicode(help="Profile used when the client names none.", config=True)
    account_prefix = Unicode(
        "kh-", help="Prefix of the system account of each hub user.", config=True
    )
    homes_directory = Unicode(
        "",
        help="The site's home folders (home.root): a cluster's HOME is <this>/<user>, as "
        "for the user's server, when that folder exists.",
        config=True,
    )

    @default("cluster_options")
    def _default_cluster_options(self):
        return self.options_for

    # ---- options ---------------------------------------------------------------------

    def options_for(self, user) -> Options:
        return ProfileOptions(self.profiles, self.default_profile)(user)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._scale_requests: dict[str, int] = {}
        """The last scale request per cluster, ahead of the scheduler's next heartbeat."""
        self.environments: ClusterEnvironments | None = None
        self.usage = ClusterUsage(None)
        self._following: asyncio.Task | None = None

    # ---- environments --------------------------------------------------------------

    async def cluster_environment(self, user, name: str) -> ClusterEnvironment:
        """The environment ``name`` of ``user``'s new cluster; PublicException if refused."""
        if not name:
            return OWN_ENVIRONMENT
        if self.environments is None:
            raise PublicException(
                f"This gateway cannot check which environments you may launch, so it runs "
                f"clusters only in KioskHub's own: create the cluster with environment='' "
                f"(asked for {name!r})."
            )
        return await self.environments.resolve(user.name, user.groups, name)

    runs_images = False
    """Whether this backend runs a cluster of an image environment as containers of that
    image; if not, such a cluster runs in KioskHub's own environment."""

    async def process_cluster_options(self, user, request):
        """The options and config of a new cluster, run in the environment it names."""
        options, config = await super().process_cluster_options(user, request)
        environment = await self.cluster_environment(user, options.get("environment", ""))
        if environment.image and self.runs_images:
            config.scheduler_cmd, config.worker_cmd = image_commands()
            config.environment_image = environment.image
        if environment.prefix is not None:
            config.scheduler_cmd, config.worker_cmd = environment_commands(environment.prefix)
            config.environment_prefix = str(environment.prefix)
            config.environment_groups = list(environment.groups)
        return options, config

    def get_env(self, cluster):
        """In a venv of its own, a cluster's processes see that venv, not the gateway's."""
        env = super().get_env(cluster)
        prefix = cluster.config.get("environment_prefix")
        if prefix:
            for key in ("PYTHONPATH", "PYTHONHOME", "CONDA_ROOT", "CONDA_DEFAULT_ENV"):
                env.pop(key, None)
            env.update(PATH=f"{prefix}/bin:{SYSTEM_PATH}", VIRTUAL_ENV=prefix)
        return env

    async def start_cluster(self, user, cluster_options):
        options, config = await self.process_cluster_options(user, cluster_options)
        await self.check_account(user.name, config)
        self.check_new_cluster(user.name, config.to_dict())
        record = cluster_record(
            username=user.name,
            groups=tuple(user.groups),
            options=options,
            config=config.to_dict(),
            workers=0,
            backend=self.usage_backend(config.to_dict()),
            now=time.time(),
        )
        reserved = await self.usage.reserve(record, config.to_dict(), user.admin)
        try:
            cluster = self.db.create_cluster(user.name, options, config.to_dict())
        except BaseException:
            await self.usage.discard(reserved)
            raise
        await self.usage.named(reserved, cluster.name)
        self.log.info(
            "Created cluster %s for user %s in %s",
            cluster.name,
            user.name,
            config.environment_image or config.environment_prefix or "KioskHub's own environment",
        )
        self.queue.put(cluster)
        return cluster.name

    async def forward_message_to_scheduler(self, cluster, msg):
        """Refuse a scale request beyond the user's limits; hold adaptive scaling within them."""
        if msg.get("op") == "scale":
            breach = self.limit_breach(cluster.username, cluster.config, msg["count"], cluster.name)
            if breach:
                raise PublicException(
                    f"Scaling cluster {cluster.name} to {msg['count']} workers would use "
                    f"{breach}. Scale to fewer workers, or shut down another cluster."
                )
            label = f"Scaling cluster {cluster.name} to {msg['count']} workers"
            refusal = await self.usage.resize(cluster.name, msg["count"], label)
            if refusal is not None:
                raise PublicException(refusal.message)
            self._scale_requests[cluster.name] = msg["count"]
        elif msg.get("op") == "adapt":
            self._scale_requests.pop(cluster.name, None)
        if msg.get("op") == "adapt" and msg.get("maximum") is not None:
            most = self.most_workers_within_limits(cluster, msg["maximum"])
            label = f"Adaptive scaling of cluster {cluster.name} to {most} workers"
            most = await self.usage.most_workers(cluster.name, most, label)
            msg = {**msg, "maximum": most, "minimum": min(msg.get("minimum") or 0, most)}
        await super().forward_message_to_scheduler(cluster, msg)

    async def do_stop_cluster(self, cluster):
        self._scale_requests.pop(cluster.name, None)
        await super().do_stop_cluster(cluster)

    # ---- usage ---------------------------------------------------------------------

    def usage_backend(self, config) -> str:
        """The backend named in a cluster's usage record."""
        image = config.get("environment_image") and self.runs_images
        return "dask-podman" if image else "dask-local"

    def usage_groups(self, cluster_name: str) -> ProcessGroups:
        """The cgroup folders of each process of a cluster; none: not read."""
        return dict

    # ---- set-up and dashboards ---------------------------------------------------------

    async def setup(self, app):
        add_dashboard_routes(app)
        if self.site_config:
            self.environments = await asyncio.to_thread(
                ClusterEnvironments.from_site_file, self.site_config
            )
            self.usage = ClusterUsage(self.environments.site)
        await super().setup(app)
        closed = await self.usage.close_left_open()
        if closed:
            self.log.warning("Closed %d usage records of clusters gone with a gateway", closed)
        self._following = asyncio.ensure_future(self.usage.follow(self.usage_groups))

    async def cleanup(self):
        await super().cleanup()
        if self._following is not None:
            self._following.cancel()

    async def _check_cluster_proxied(self, cluster):
        """Route only the scheduler (TLS, by SNI) through dask-gateway's proxy; its
        dashboard stays on the gateway's own route, ``dask_dashboard_proxy``. (Replaces
        the upstream method, which routes ``/clusters/<name>`` to the dashboard with no
        authentication.)"""
        if not cluster.added_to_proxies:
            await self.proxy.add_route(
                kind="SNI", sni=cluster.name, target=cluster.scheduler_address
            )
            cluster.added_to_proxies = True

    def get_worker_command(self, cluster, worker_name, scheduler_address=None):
        """Workers without dashboards: nothing proxies them, and each would be a port."""
        command = super().get_worker_command(cluster, worker_name, scheduler_address)
        return [*command, "--no-dashboard"]

    # ---- working folders -------------------------------------------------------------

    def account(self, username: str) -> pwd.struct_passwd | None:
        """The system account that runs ``username``'s clusters; None: the gateway's own."""
        return None

    async def check_account(self, username: str, config) -> None:
        """Refuse a new cluster of ``username`` that has no account to run as
        (PublicException); keep in ``config`` what it runs as, where that is not fixed."""
        self.account(username)

    def runs_as(self, cluster) -> Account | None:
        """The account of ``cluster``'s processes; None: the gateway's own."""
        account = self.account(cluster.username)
        return account and Account(account.pw_name, account.pw_uid, account.pw_gid)

    def setup_working_directory(self, cluster):
        """The cluster's folder below ``clusters_directory``, with its TLS files, owned by
        the cluster's account. (Replaces the upstream method, which hands each character
        of the certificate paths to ``chown``.)"""
        workdir = os.path.join(self.clusters_directory, cluster.name)
        certs, logs = self.get_certs_directory(workdir), self.get_logs_directory(workdir)
        for path in (workdir, certs, logs):
            os.makedirs(path, 0o700, exist_ok=True)
        cert_path, key_path = self._get_tls_paths(workdir)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        for path, data in ((cert_path, cluster.tls_cert), (key_path, cluster.tls_key)):
            with os.fdopen(os.open(path, flags, 0o600), "wb") as handle:
                handle.write(data)
        account = self.runs_as(cluster)
        if account is not None:
            for path in (workdir, certs, logs, cert_path, key_path):
                os.chown(path, account.uid, account.gid)
        return workdir


def open_log(workdir: str, filename: str) -> int:
    """A new log file in the ``logs`` folder of ``workdir``, opened without following a
    link: the folder is the user's, and root creates the file."""
    nofollow = os.O_NOFOLLOW | os.O_DIRECTORY
    work = os.open(workdir, nofollow)
    try:
        logs = os.open("logs", nofollow, dir_fd=work)
    finally:
        os.close(work)
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        return os.open(filename, flags, 0o644, dir_fd=logs)
    finally:
        os.close(logs)


class KioskProcessBackend(UserAccountsMixin, KioskBackend, LocalBackend):
    """Clusters as local processes of the user's system account (``kh-<user>``) or lab
    identity (``dask_cluster_accounts``), each in a cgroup with its limits."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.cgroups = ClusterCgroups()

    def usage_groups(self, cluster_name: str) -> ProcessGroups:
        """The groups of each process (one per controller on cgroup v1)."""

        def groups() -> dict[str, tuple[str, ...]]:
            found: dict[str, tuple[str, ...]] = {}
            for folder in self.cgroups.of_cluster(cluster_name).dirs:
                process = posixpath.basename(folder)
                found[process] = (*found.get(process, ()), folder)
            return found

        return groups

    async def start_process(self, cluster, cmd, env, name):
        """Start ``cmd`` as the user, in a fresh cgroup ``name`` of the cluster.

        The child enters the group as root before it drops to the user, so that all it
        starts stays inside. (Replaces the upstream method to enter the group.)
        """
        group = self.cgroups.create(cluster.name, name, cluster.config)
        enter = group.enter_fn() if group else None
        become = self.make_preexec_fn(cluster)

        def preexec():  # pragma: no cover (runs in the child)
            if enter is not None:
                enter()
            become()

        fd = open_log(cluster.state["workdir"], f"{name}.log")
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                preexec_fn=preexec,
                start_new_session=True,
                env=env,
                stdout=fd,
                stderr=asyncio.subprocess.STDOUT,
            )
        except BaseException:
            if group is not None:
                await self.cgroups.remove(group, f"cluster {cluster.name}")
            raise
        finally:
            os.close(fd)
        return proc.pid

    async def do_stop_worker(self, worker):
        await super().do_stop_worker(worker)
        name, cluster = f"worker-{worker.name}", worker.cluster.name
        await self.cgroups.remove(self.cgroups.of_cluster(cluster, name), f"{name} of {cluster}")

    async def do_stop_cluster(self, cluster):
        """Stop the scheduler, kill all that is left in the cluster's groups, then remove
        its folder (so that nothing writes there any more)."""
        self._scale_requests.pop(cluster.name, None)
        pid = cluster.state.get("pid")
        if pid is not None:
            await self.stop_process(pid)
        await self.cgroups.remove(self.cgroups.of_cluster(cluster.name), f"cluster {cluster.name}")
        workdir = cluster.state.get("workdir")
        if workdir is not None:
            self.cleanup_working_directory(workdir)


class KioskLocalBackend(RecordsUsage, ImageContainersMixin, KioskProcessBackend):
    """Clusters as the user's account or lab identity: local processes, or, for a
    server's image on the podman backend, containers of that image
    (``dask_cluster_containers``)."""


class KioskSharedLocalBackend(RecordsUsage, KioskBackend, UnsafeLocalBackend):
    """Clusters as local processes of the gateway's own account (the hub is not root)."""
