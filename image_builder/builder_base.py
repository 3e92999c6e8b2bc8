"""The environment builder axis: what every builder takes, returns and raises.

A builder turns a ``BuildRequest`` (a checked source: repository, ref, subfolder) into an
``Artifact`` (a venv path, or an image reference and digest, pinned to a commit). Subclasses
override one coroutine, ``build``, and report through the ``BuildLog`` they are handed:

- ``build`` returns the Artifact on success, reusing an existing one when the content hash
  matches (``Artifact.reused``);
- it raises ``BuildFailed`` with a message for the user when the build cannot succeed;
- it must stop promptly when cancelled (``asyncio.CancelledError``) and leave no half-made
  artifact behind.

The orchestrator (``build_runner``) owns the catalog, the queue, the timeout and cancellation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .build_log import BuildLog
from .git_credentials import GitCredentials
from .source_safety import RepositorySource

BUILDER_VERSION = "2"
"""Part of every content hash: bump it when the build recipe changes, to stop reuse."""


class BuildFailed(Exception):
    """The build cannot succeed; the message says why and what to do."""


class NeedsContainerBuilder(BuildFailed):
    """The repository asks for something only a container build provides (apt, conda, ...)."""


@dataclass(frozen=True)
class BuildRequest:
    """One build to run: a checked source and the names it is recorded under."""

    build_id: int
    owner: str
    name: str
    source: RepositorySource
    ref: str = "HEAD"
    subdir: str = ""
    credentials: GitCredentials | None = field(default=None, repr=False, compare=False)
    """The asking user's, for a private repository: fetches only, this build only."""


@dataclass(frozen=True)
class Artifact:
    """What a successful build made, pinned to ``commit_sha``."""

    commit_sha: str
    content_hash: str | None = None
    venv_path: str | None = None
    image_ref: str | None = None
    image_digest: str | None = None
    reused: bool = False
    notes: list[str] = field(default_factory=list)
    """What a person should know about how it was built (e.g. another Python than asked)."""


class EnvironmentBuilder:
    """Base class of builders; see the module docstring for the contract."""

    kind = "abstract"

    async def check_registration(
        self, source: RepositorySource, credentials: GitCredentials | None = None
    ) -> None:
        """Raise BuildFailed when a hub user may not register ``source`` with this builder
        (checked before the environment is recorded); the default allows every checked source.

        ``credentials``: the user's own, when their access to the source was checked with them.
        """

    async def build(self, request: BuildRequest, log: BuildLog) -> Artifact:
        raise NotImplementedError
