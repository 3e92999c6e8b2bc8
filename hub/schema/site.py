"""The site config schema: one typed, immutable model of ``kioskhub.yaml``.

Relative paths in the file are resolved against the file's own folder, never
against the current directory, so the same file means the same thing wherever
``kioskhub`` is started from.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from .accounting import AccountingSettings
from .auth import AuthSettings
from .builder import BuilderSettings, pod_registry_problem
from .choices import (
    DEFAULT_ENVIRONMENT,
    DEFAULT_PROFILE,
    BackendName,
    ByteSize,
    Environment,
    ResourceProfile,
)
from .culling import CullingSettings, unknown_culling_profiles
from .dask import DaskSettings, unknown_dask_profiles
from .gallery import SEAT_PREFIX, GallerySettings
from .gitlab import GitLabSettings
from .openstack import OpenStackSettings, openstack_problems
from .paths import ConfigPath
from .pods import PodSettings, pod_settings_problems
from .quotas import QuotaSettings, quota_problems
from .section import Section
from .workshops import PARTICIPANT_PREFIX, WorkshopSettings

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,28}$"
"""Hub usernames: lowercase, 1–29 characters, safe in URLs, paths and system account names
(with the three-character account prefix they stay within Linux's 32)."""

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds KioskHub's packages: the source checkout, or ``site-packages/kioskhub``."""


def shipped_examples() -> Path:
    """The folder of the example notebooks that ship as the package ``kioskhub.examples``.

    It holds notebooks only (a namespace package), so its folder is asked of the import
    system: ``importlib.resources`` refuses the extra path entry of an editable install.
    """
    spec = importlib.util.find_spec("kioskhub.examples")
    locations = spec.submodule_search_locations if spec else None
    folders = [Path(entry) for entry in locations or () if Path(entry).is_dir()]
    return folders[0] if folders else Path("<kioskhub.examples is not installed>")


DEFAULT_EXAMPLES = shipped_examples()


RESERVED_USERNAMES = frozenset(
    {
        # KioskHub's own identities: the build account (kh-build) and the site's catalog.
        "build",
        "site",
        # Hub services and the hub's own URL segments.
        "environments",
        "dask-gateway",
        "idle-culler",
        "hub",
        "services",
        "user",
        "users",
        "api",
        "gallery-run",  # re-executes gallery versions (gallery.reexec_hub_api)
        # System accounts of Debian and other common ones.
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "gnats",
        "nobody",
        "nogroup",
        "messagebus",
        "sshd",
        "postgres",
        "jupyter",
        "jovyan",
    }
)
"""Usernames no hub user may have: every account or service name KioskHub uses and the
usual system accounts, so that a username never means anything but that user."""

RESERVED_PREFIXES = ("kh-", "systemd-", "_", PARTICIPANT_PREFIX, SEAT_PREFIX)
"""Names that look like KioskHub's system accounts (kh-ada is ada's), a system service's, a
temporary workshop participant's (made by the join page alone, never by a sign-in) or a
gallery reviewer's temporary seat (made by the hub's seat page alone)."""


def check_username(name: str, reserved: frozenset[str] = RESERVED_USERNAMES) -> str:
    """Return ``name`` when it is a valid hub username, else raise ValueError saying why.

    ``reserved`` adds names to the fixed ``RESERVED_USERNAMES``.
    """
    if not isinstance(name, str) or not re.fullmatch(USERNAME_PATTERN, name):
        shown = repr(name[:40] + "…" if len(name) > 40 else name)
        raise ValueError(
            f"invalid username {shown}: use 1–29 characters of lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if name in reserved or name in RESERVED_USERNAMES or name.startswith(RESERVED_PREFIXES):
        raise ValueError(
            f"the username {name!r} is reserved for KioskHub or the system; "
            "sign in with your own username"
        )
    return name


class InternalPorts(Section):
    hub: int = Field(8081, ge=1, le=65535, description="Port of the hub's internal API.")
    proxy_api: int = Field(
        8001, ge=1, le=65535, description="Port of configurable-http-proxy's REST API."
    )


class HubSettings(Section):
    url: str = Field(
        "http://127.0.0.1:8000",
        description="Public URL that users open; the proxy listens here.",
    )
    state_dir: ConfigPath = Field(
        Path(".kioskhub"),
        description="Folder for the hub's database, cookie secret and generated passwords.",
    )
    admin_users: tuple[str, ...] = Field(
        ("admin",), description="Usernames that get admin rights in the hub."
    )
    internal_ports: InternalPorts = Field(
        InternalPorts(),
        description="Ports on 127.0.0.1 that the hub's own parts use to talk to each other.",
    )
    cleanup_servers: bool = Field(
        True,
        description="Stop every user server when the hub stops. Turn off to let servers "
        "keep running across a hub restart.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="How much the hub logs; DEBUG is verbose, for tracking down problems."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^/\s:]+(:\d{1,5})?/?", value):
            raise ValueError("expected a URL like http://127.0.0.1:8000 (scheme, host, port)")
        return value.rstrip("/")

    @field_validator("admin_users")
    @classmethod
    def _check_admins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            check_username(name)
        return value


class SpawnerSettings(Section):
    backend: BackendName = Field(
        "local",
        description="Where user servers run. 'local': processes on this machine; 'podman': "
        "container pods on this machine; 'kubernetes': pods in a cluster (KubeSpawner); "
        "'openstack': a virtual machine each (see openstack). Both pod backends run the "
        "same Pod manifest (see pods). A profile's `backends` may list several, in order "
        "(cloud bursting).",
    )
    default_url: str = Field("/lab", description="Where a user lands in their server.")
    start_timeout: int = Field(
        120, ge=5, description="Seconds a server may take to start before it is given up."
    )
    http_timeout: int = Field(
        60, ge=5, description="Seconds a started server may take to answer HTTP."
    )
    isolation: Literal["auto", "system-users", "shared-account"] = Field(
        "auto",
        description="system-users: each hub user runs as a system account of their own "
        "(needs root); shared-account: every server runs as the hub's own account, with no "
        "isolation between users; auto: system-users when the hub runs as root.",
    )
    local_cpu: float | None = Field(
        None,
        gt=0,
        description="Cloud bursting: the CPU cores that servers on this machine (local and "
        "podman backends) may take together; a profile that lists backends starts on the "
        "next one when this is used up. Empty: the machine's cores.",
    )
    local_memory: ByteSize | None = Field(
        None,
        description="Cloud bursting: the memory servers on this machine may take together, "
        "e.g. 64G. Empty: the machine's memory.",
    )
    system_user_prefix: str = Field(
        "kh-",
        pattern=r"^[a-z_][a-z0-9_-]{0,2}$",
        description="Prefix of the system accounts made for hub users (kh-ada for ada), so "
        "that a hub username never maps onto an existing system account such as root.",
    )
    fork_server: bool = Field(
        True,
        description="Local backend: start servers by forking a warm parent per environment "
        "that has already imported JupyterLab and its extensions (a server in about a "
        "second instead of several). Only for KioskHub's own environment and the venvs of "
        "this config's environments (never for environments built from a repository, whose "
        "code the parent, as root, would import); any start it cannot serve starts normally, "
        "with a "
        "line in the hub's log. Off: every server starts as a fresh process.",
    )
    fork_kernels: bool = Field(
        True,
        description="With fork_server: each forked server also forks its IPython kernels "
        "from a zygote of its own (running as the user, in the server's mounts and cgroup) "
        "that its fork server had imported ipykernel for, instead of starting a new python "
        "per kernel. Kernels of other kernelspecs, or whose environment changes how python "
        "starts, start normally. Off: every kernel starts as a new process.",
    )
    fork_server_prewarm: tuple[str, ...] = Field(
        (),
        description="Environments (kind venv) whose fork server starts with the hub; the "
        "others start on their first server's start.",
    )


class HomeSettings(Section):
    root: ConfigPath = Field(
        Path(".kioskhub/homes"),
        description="Folder that holds one persistent home folder per user.",
    )


class DataMount(Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="Short name of the mount.")
    source: ConfigPath = Field(description="Folder on this machine that holds the data.")
    mount_path: str = Field("/data", description="Where the data appears inside a server.")
    read_only: bool = Field(True, description="Refuse writes to this mount.")
    groups: tuple[str, ...] = Field(
        (),
        description="JupyterHub groups that get this mount; empty means everyone. The "
        "local backend mounts it as root before dropping to the user, and refuses to start "
        "a server unless the source sits below a root-owned folder closed to other accounts "
        "(mode 0700), so other accounts cannot read it through its host path either.",
    )

    @field_validator("mount_path")
    @classmethod
    def _absolute_mount_path(cls, value: str) -> str:
        if not value.startswith("/") or "/../" in f"{value}/" or value.rstrip("/") == "":
            raise ValueError(f"expected an absolute path like /data below /, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _source_exists(self) -> DataMount:
        if not self.source.is_dir():
            raise ValueError(
                f"source folder {self.source} does not exist; create it, or run "
                "`kioskhub init` to write the sample data"
            )
        return self


class ExampleSettings(Section):
    source: ConfigPath = Field(
        DEFAULT_EXAMPLES,
        description="Folder of example notebooks copied into each new user's home.",
    )
    target: str = Field(
        "examples", description="Folder inside the user's home that receives the examples."
    )

    @model_validator(mode="after")
    def _source_exists(self) -> ExampleSettings:
        if not self.source.is_dir():
            raise ValueError(f"source folder {self.source} does not exist")
        return self


class Site(Section):
    """The whole site: everything ``kioskhub.yaml`` can say."""

    hub: HubSettings = Field(
        HubSettings(), description="The hub itself: its URL, state folder and admins."
    )
    auth: AuthSettings = Field(AuthSettings(), description="How users sign in.")
    spawner: SpawnerSettings = Field(
        SpawnerSettings(), description="How and where user servers are started."
    )
    home: HomeSettings = Field(HomeSettings(), description="Persistent home folders, one per user.")
    environments: tuple[Environment, ...] = Field(
        (DEFAULT_ENVIRONMENT,), description="Software environments offered in the spawn form."
    )
    profiles: tuple[ResourceProfile, ...] = Field(
        (DEFAULT_PROFILE,), description="Resource profiles offered in the spawn form."
    )
    data_mounts: tuple[DataMount, ...] = Field(
        (),
        description="Central data folders made visible in user servers and linked into each home.",
    )
    examples: ExampleSettings = Field(
        ExampleSettings(), description="Example notebooks handed to each user once."
    )
    groups: dict[str, tuple[str, ...]] = Field(
        {},
        description="JupyterHub groups and their members, loaded at start. Groups can also "
        "be managed by an authenticator or in the hub's admin page.",
    )
    dask: DaskSettings = Field(
        DaskSettings(), description="Scale-out with Dask Gateway, run as a hub service."
    )
    pods: PodSettings = Field(
        PodSettings(),
        description="Container pods (spawner.backend podman or kubernetes): image, account, "
        "home claims, data volumes and GPU scheduling.",
    )
    builder: BuilderSettings = Field(
        BuilderSettings(),
        description="Environments built from git repositories: the catalog, the builds and "
        "the sources they may fetch.",
    )
    gitlab: GitLabSettings = Field(
        GitLabSettings(),
        description="Environments built by the users' own GitLab CI: the GitLab instance, "
        "the projects it may build and how KioskHub follows the pipelines.",
    )
    accounting: AccountingSettings = Field(
        AccountingSettings(),
        description="Usage records of every server, reports and APEL export.",
    )
    culling: CullingSettings = Field(
        CullingSettings(), description="Stopping idle or long-running servers, per profile."
    )
    workshops: WorkshopSettings = Field(
        WorkshopSettings(),
        description="Events that teachers run: join links, temporary seats, materials, a "
        "class view and clean expiry.",
    )
    gallery: GallerySettings = Field(
        GallerySettings(),
        description="The review gallery: notebooks published from JupyterLab, pinned to "
        "their environment, commit and data, for review and reproduction.",
    )
    openstack: OpenStackSettings = Field(
        OpenStackSettings(),
        description="User servers as OpenStack virtual machines (spawner.backend openstack, "
        "or a profile that bursts to it): the cloud, network, security group, images, "
        "flavors and home volumes.",
    )
    quotas: QuotaSettings = Field(
        QuotaSettings(),
        description="Limits on servers, cores, memory and GPUs per user and per group, "
        "across servers and Dask clusters, and budgets over time (GPU-hours per month).",
    )

    @field_validator("environments", "profiles", "data_mounts")
    @classmethod
    def _unique_names(cls, value: tuple, info) -> tuple:
        names = [item.name for item in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"names must be unique; repeated: {', '.join(dupes)}")
        if info.field_name != "data_mounts":
            if not value:
                raise ValueError("list at least one")
            defaults = [item.name for item in value if item.default]
            if len(defaults) > 1:
                raise ValueError(f"only one may be the default; marked: {', '.join(defaults)}")
        return value

    @model_validator(mode="after")
    def _unique_mount_paths(self) -> Site:
        paths = [m.mount_path for m in self.data_mounts]
        dupes = sorted({p for p in paths if paths.count(p) > 1})
        if dupes:
            raise ValueError(f"data_mounts: two mounts share mount_path {', '.join(dupes)}")
        if self.auth.gitlab and not (self.auth.gitlab.url or self.gitlab.url):
            raise ValueError("auth.gitlab: give its url, or gitlab.url, for GitLab sign-in")
        if self.groups and self.auth.type == "oidc":
            raise ValueError(
                "groups: with auth.type oidc, groups come from the sign-in "
                "provider (and become JupyterHub groups at each sign-in); remove the groups "
                "section and give the groups at the provider"
            )
        unknown = unknown_dask_profiles(self.dask, [p.name for p in self.profiles])
        if unknown:
            raise ValueError(
                f"dask.profiles: {', '.join(unknown)} is not a resource profile; "
                f"the profiles are: {', '.join(p.name for p in self.profiles)}"
            )
        unknown = unknown_culling_profiles(self.culling, [p.name for p in self.profiles])
        if unknown:
            raise ValueError(
                f"culling.profiles: {', '.join(unknown)} is not a resource profile; "
                f"the profiles are: {', '.join(p.name for p in self.profiles)}"
            )
        reserved = RESERVED_USERNAMES
        for key, names in [("hub.admin_users", self.hub.admin_users)] + [
            (f"groups.{group}", members) for group, members in self.groups.items()
        ]:
            taken = sorted(set(names) & reserved)
            if taken:
                raise ValueError(
                    f"{key}: {', '.join(taken)} is a reserved name (KioskHub's own or a system "
                    "name); choose another username"
                )
        venvs = [e.name for e in self.environments if e.kind == "venv"]
        unknown = [n for n in self.spawner.fork_server_prewarm if n not in venvs]
        if unknown:
            raise ValueError(
                f"spawner.fork_server_prewarm: {', '.join(unknown)} is not an environment of "
                f"kind venv; those are: {', '.join(venvs) or 'none'}"
            )
        problems = pod_settings_problems(
            self.pods,
            self.spawner.backend,
            [m.name for m in self.data_mounts],
            [p.name for p in self.profiles],
        )
        if problems:
            raise ValueError("; ".join(problems))
        problems = openstack_problems(
            self.openstack,
            [p.name for p in self.profiles if "openstack" in self.profile_backends(p)],
            [p.name for p in self.profiles],
            [e.name for e in self.environments],
        )
        if problems:
            raise ValueError("; ".join(problems))
        problem = pod_registry_problem(self.builder, self.spawner.backend)
        if problem:
            raise ValueError(problem)
        problems = quota_problems(
            self.quotas, self.accounting.enabled, self.profiles, check_username
        )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def profile_backends(self, profile: ResourceProfile) -> tuple[str, ...]:
        """The backends ``profile``'s servers may start on, in order of preference."""
        return profile.backends or (self.spawner.backend,)

    def bursts(self) -> bool:
        """Whether any profile lists backends of its own (cloud bursting)."""
        return any(profile.backends for profile in self.profiles)

    def pull_insecure_registries(self) -> tuple[str, ...]:
        """Registries pods pull from without TLS: ``pods.insecure_registries``, and the
        builder's own registry when ``builder.registry_insecure`` (one switch for both)."""
        own = self.builder.registry.split("/", 1)[0] if self.builder.registry_insecure else ""
        listed = self.pods.insecure_registries
        return listed + (own,) if own and own not in listed else listed
