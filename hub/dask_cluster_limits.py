"""Dask's own per-user limits (``dask.user_limits``), a part of ``KioskBackend``.

``max_clusters``, ``max_cores`` and ``max_memory`` hold all of one user's Dask clusters
together, counting what each cluster asked for last (a scale request ahead of the
scheduler's next heartbeat). They count clusters only; the site's ``quotas:`` count a
user's servers and clusters together (``dask_cluster_usage``), and a request must fit
both. The gateway checks these first, so their messages speak of clusters alone.
"""

from __future__ import annotations

from dask_gateway_server.backends.base import PublicException
from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from kioskhub.spawner.spawn_form import format_bytes

from .dask_cluster_usage import cluster_size


class DaskUserLimits(LoggingConfigurable):
    """Limits on all of a user's clusters, for a backend with ``db`` and ``_scale_requests``."""

    max_clusters = Integer(
        None, allow_none=True, help="Most active clusters per user.", config=True
    )
    max_cores = Float(
        None, allow_none=True, help="Most cores of all of a user's clusters.", config=True
    )
    max_memory = Integer(
        None, allow_none=True, help="Most bytes of all of a user's clusters.", config=True
    )

    def _use_of_others(self, username: str, exclude: str | None = None) -> tuple[float, int]:
        cores, memory = 0.0, 0
        for cluster in self.db.list_clusters(username=username):
            if cluster.name != exclude:
                workers = self._scale_requests.get(cluster.name, cluster.count)
                c, m = cluster_size(cluster.config, workers)
                cores, memory = cores + c, memory + m
        return cores, memory

    def limit_breach(self, username: str, config, workers: int, exclude=None) -> str | None:
        """What a cluster of ``config`` with ``workers`` workers would exceed, or None."""
        other_cores, other_memory = self._use_of_others(username, exclude)
        cores, memory = cluster_size(config, workers)
        if self.max_cores is not None and other_cores + cores > self.max_cores:
            return (
                f"{cores:g} cores, while your clusters may use {self.max_cores:g} cores in all "
                f"and your other clusters use {other_cores:g}"
            )
        if self.max_memory is not None and other_memory + memory > self.max_memory:
            return (
                f"{format_bytes(memory)} of memory, while your clusters may use "
                f"{format_bytes(self.max_memory)} in all and your other clusters use "
                f"{format_bytes(other_memory)}"
            )
        return None

    def check_new_cluster(self, username: str, config) -> None:
        """Refuse (PublicException) a new cluster of ``config`` beyond the limits."""
        active = self.db.list_clusters(username=username)
        if self.max_clusters is not None and len(active) >= self.max_clusters:
            raise PublicException(
                f"You already run {len(active)} Dask cluster(s), the most one user may run "
                f"at once is {self.max_clusters}. Shut one down first (cluster.shutdown(), "
                "or Gateway().stop_cluster(name) for each of Gateway().list_clusters())."
            )
        breach = self.limit_breach(username, config, 0)
        if breach:
            raise PublicException(f"A new cluster's scheduler would use {breach}.")

    def most_workers_within_limits(self, cluster, most: int) -> int:
        """The most workers, up to ``most``, that the limits allow ``cluster``."""
        while most > 0 and self.limit_breach(cluster.username, cluster.config, most, cluster.name):
            most -= 1
        return most
