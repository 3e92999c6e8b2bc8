"""The cluster options of KioskHub's gateway: a resource profile among those a user may use,
and the environment the cluster runs in.

Used by the local backends (``dask_gateway_backend``) and, through the chart's extra
config, by dask-gateway's ``KubeBackend`` (``dask_gateway_kube``).
"""

from __future__ import annotations

from dask_gateway_server.options import Options, Select, String

ENVIRONMENT = String("environment", default="", label="Environment")


class ProfileOptions:
    """The cluster options of a user: a ``profile`` among those their groups allow, and an
    ``environment``.

    Callable as dask-gateway's ``Backend.cluster_options`` on any backend. Each profile
    (a dict: name, groups, worker_cores, worker_memory, max_workers, idle_timeout) sets
    the worker size, the most workers and the idle timeout of the cluster. The
    ``environment`` (a server's default is its own, ``client_env``; empty: KioskHub's own)
    is only a name here: the backend resolves it, among those the user may launch
    (``dask_cluster_environments``).
    """

    def __init__(self, profiles: list[dict], default: str):
        self.profiles = profiles
        self.default = default

    def allowed(self, user) -> list[dict]:
        return [p for p in self.profiles if not p["groups"] or set(p["groups"]) & user.groups]

    def __call__(self, user) -> Options:
        names = [p["name"] for p in self.allowed(user)]
        if not names:
            return Options(ENVIRONMENT, handler=self._no_profile)
        preset = self.default if self.default in names else names[0]
        return Options(
            Select("profile", names, default=preset, label="Resource profile"),
            ENVIRONMENT,
            handler=self._profile_config,
        )

    def _profile_config(self, options, user) -> dict:
        profile = next(p for p in self.profiles if p["name"] == options.profile)
        return {
            "worker_cores": profile["worker_cores"],
            "worker_memory": profile["worker_memory"],
            "cluster_max_workers": profile["max_workers"],
            "idle_timeout": float(profile["idle_timeout"]),
        }

    @staticmethod
    def _no_profile(options, user):
        raise ValueError("No resource profile is available to your groups; ask the site's admins.")
