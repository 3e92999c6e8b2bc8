"""The site config schema: one typed, immutable model of ``kioskhub.yaml``.

Relative paths in the file are resolved against the file's own folder, never
against the current directory, so the same file means the same thing wherever
``kioskhub`` is started from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,31}$"
"""Hub usernames: lowercase, 1–32 characters, safe in URLs, paths and account names."""

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXAMPLES = PACKAGE_ROOT / "notebooks" / "examples"


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = value.expanduser()
    if not value.is_absolute() and base is not None:
        value = Path(base) / value
    return value.resolve() if base is not None else value


ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]
"""A path in the site config; relative paths are taken from the config file's folder."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    internal_ports: InternalPorts = InternalPorts()
    cleanup_servers: bool = Field(
        True,
        description="Stop every user server when the hub stops. Turn off to let servers "
        "keep running across a hub restart.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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


class AuthSettings(Section):
    type: Literal["shared-password"] = Field(
        "shared-password",
        description="How users sign in. 'shared-password': any valid username with one "
        "shared password.",
    )
    shared_password: str | None = Field(
        None,
        min_length=8,
        description="Password for all non-admin users. Left empty, one is generated on the "
        "first run and kept in the state folder.",
    )
    admin_password: str | None = Field(
        None,
        min_length=32,
        description="Password for the admin users. Left empty, one is generated and kept in "
        "the state folder.",
    )


class SpawnerSettings(Section):
    backend: Literal["local"] = Field(
        "local", description="Where user servers run. 'local': processes on this machine."
    )
    default_url: str = Field("/lab", description="Where a user lands in their server.")
    start_timeout: int = Field(
        120, ge=5, description="Seconds a server may take to start before it is given up."
    )
    http_timeout: int = Field(
        60, ge=5, description="Seconds a started server may take to answer HTTP."
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

    hub: HubSettings = HubSettings()
    auth: AuthSettings = AuthSettings()
    spawner: SpawnerSettings = SpawnerSettings()
    home: HomeSettings = HomeSettings()
    data_mounts: tuple[DataMount, ...] = ()
    examples: ExampleSettings = ExampleSettings()

    @field_validator("data_mounts")
    @classmethod
    def _unique_mounts(cls, value: tuple[DataMount, ...]) -> tuple[DataMount, ...]:
        names = [m.name for m in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"mount names must be unique; repeated: {', '.join(dupes)}")
        return value


def check_username(name: str) -> str:
    """Return ``name`` when it is a valid hub username, else raise ValueError saying why."""
    if not re.fullmatch(USERNAME_PATTERN, name):
        raise ValueError(
            f"invalid username {name!r}: use 1–32 characters of lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return name
