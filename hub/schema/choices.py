"""What a user chooses from at spawn time: environments and resource profiles."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .paths import ConfigPath
from .section import Section

_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}


def parse_bytes(value: object) -> object:
    """'2G', '512Mi', '1.5GiB' or a plain number → bytes; other input is left to validation."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]i?)?[bB]?\s*", value)
        if not match:
            raise ValueError(f"expected a size like 512M, 2G or 4GiB, got {value!r}")
        number, unit = match.groups()
        return int(float(number) * _UNITS[(unit or "").lower()])
    return value


ByteSize = Annotated[int, BeforeValidator(parse_bytes), Field(gt=0)]
"""A memory size in bytes; the config may write it as 512M, 2G, 4GiB."""

BackendName = Literal["local", "podman", "kubernetes", "openstack"]
"""Where user servers run (``spawner.backend``)."""

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")]
"""A short identifier used in URLs, launch links and the API."""

FolderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")]
"""One folder of a user's home: no slash, no leading dot, never ``..``."""

CommitSha = Annotated[str, Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")]
"""A full git commit id (SHA-1 or SHA-256)."""


class Choice(Section):
    """What a user picks in the spawn form: an environment or a resource profile."""

    name: Name = Field(description="Identifier used in launch links and the API.")
    display_name: str = Field("", description="Name shown in the spawn form.")
    description: str = Field("", description="One or two sentences shown in the spawn form.")
    default: bool = Field(False, description="Preselected in the spawn form.")
    groups: tuple[str, ...] = Field(
        (), description="JupyterHub groups allowed to use this; empty means everyone."
    )

    @property
    def title(self) -> str:
        return self.display_name or self.name


class Environment(Choice):
    """A software environment a server runs in."""

    kind: Literal["venv", "image", "repository"] = Field(
        "venv",
        description="venv: an existing Python virtual environment on this machine; "
        "image: a container image (container backends); repository: built from a git "
        "repository by the image builder.",
    )
    path: ConfigPath | None = Field(
        None,
        description="For kind venv: the venv folder. Empty means KioskHub's own environment.",
    )
    image: str | None = Field(None, description="For kind image: the image reference.")
    repository: str | None = Field(
        None,
        description="For kind repository: the git URL (or absolute path, where "
        "builder.allow_local_paths) that the image builder builds at start.",
    )
    ref: str | None = Field(
        None,
        description="For kind repository: the branch, tag or commit to build; empty means "
        "the default branch.",
    )
    files_folder: FolderName | None = Field(
        None,
        description="The folder of the user's home that receives the repository's files at "
        "launch (kind repository, or a venv or image with files_source); empty means the "
        "repository's name.",
    )
    default_url: str | None = Field(
        None,
        pattern=r"^/[^\s]*$",
        description="Where the server opens, e.g. /lab/tree/analysis/index.ipynb. Empty means "
        "/lab/tree/<files folder> for an environment that brings repository files, else "
        "spawner.default_url.",
    )
    files_source: ConfigPath | None = Field(
        None,
        description="A bare git repository on this machine whose branch 'built' holds "
        "files_commit; launches pull it into files_folder with nbgitpuller's merge rules "
        "(local and podman backends). The image builder sets it for the venvs and images it "
        "builds; readable by those who may launch the environment.",
    )
    files_commit: CommitSha | None = Field(
        None, description="With files_source: the commit whose files the user receives."
    )

    @model_validator(mode="after")
    def _kind_fields(self) -> Environment:
        if self.kind == "image" and not self.image:
            raise ValueError("an environment of kind 'image' needs 'image: <reference>'")
        if self.kind != "image" and self.image:
            raise ValueError(f"'image' is only for kind 'image', not {self.kind!r}")
        if self.kind != "venv" and self.path:
            raise ValueError(f"'path' is only for kind 'venv', not {self.kind!r}")
        if self.kind == "repository" and not self.repository:
            raise ValueError("an environment of kind 'repository' needs 'repository: <git URL>'")
        if self.kind != "repository" and (self.repository or self.ref):
            raise ValueError(
                f"'repository' and 'ref' are only for kind 'repository', not {self.kind!r}"
            )
        if bool(self.files_source) != bool(self.files_commit):
            raise ValueError("'files_source' and 'files_commit' go together")
        if self.files_source and self.kind not in ("venv", "image"):
            raise ValueError(f"'files_source' is only for kinds venv and image, not {self.kind!r}")
        return self


class GpuRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(0, ge=0, le=16, description="Number of GPUs.")
    type: str | None = Field(
        None, description="GPU model to match, e.g. 'A100' or 'H100'; empty means any."
    )


class ResourceProfile(Choice):
    """How much of the machine a server may use."""

    cpu: float = Field(1.0, gt=0, le=512, description="CPU cores (a hard quota).")
    memory: ByteSize = Field(2 * 10**9, description="Memory limit (hard), e.g. 2G or 512Mi.")
    gpu: GpuRequest = Field(GpuRequest(), description="GPUs assigned to the server.")
    max_processes: int = Field(
        1024,
        ge=32,
        le=4_194_304,
        description="Most processes and threads the server may run at once (the cgroup's "
        "pids.max): a fork bomb in a notebook stops there instead of taking the machine. "
        "Each kernel and Dask worker needs a few dozen.",
    )
    backends: tuple[BackendName, ...] = Field(
        (),
        description="Cloud bursting: the backends this profile's servers start on, in order "
        "(e.g. [local, openstack]); a server starts on the first that has room for it (the "
        "quotas, the machine's free cores, memory and GPUs, the cloud's quota) and the user "
        "is told where it runs. Empty: spawner.backend alone.",
    )

    @field_validator("backends")
    @classmethod
    def _distinct_backends(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"a backend is listed twice: {', '.join(value)}")
        return value


DEFAULT_ENVIRONMENT = Environment(
    name="default",
    display_name="Python 3",
    description="KioskHub's own environment: JupyterLab, ipykernel, ipywidgets, matplotlib.",
    default=True,
    path=None,
)
DEFAULT_PROFILE = ResourceProfile(
    name="small",
    display_name="Small",
    description="1 CPU core and 2 GB of memory.",
    default=True,
)


def own_environment_path() -> Path:
    """The venv KioskHub itself runs in (the default environment's path)."""
    import sys

    return Path(sys.prefix)
