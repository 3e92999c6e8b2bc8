"""The site base image for local pods, as a recipe: pure, so it can be tested literally.

No registry is needed: Debian's minimal base system comes from the Debian mirror this
machine's apt already uses (``debootstrap --variant=minbase``), is imported into podman, and
one more layer adds Python and pip-installs, at the hub's own versions, what every server
needs: the server (jupyterhub, jupyterlab, ipykernel; nbgitpuller, whose server extension
pulls workshop materials), the Dask Gateway client (dask-gateway,
dask, distributed, and the packages Dask compares between client, scheduler and workers), and
KioskHub's server extensions (``kioskhub.extensions``, enabled by the image's Jupyter
config). The image's tag is a digest of everything that goes into it, so a hub upgrade asks
for a new image and an unchanged recipe reuses the one in podman's storage.

The image's layout, which images built FROM it (repository environments) rely on:

- ``/opt/kioskhub`` (``IMAGE_PREFIX``): a venv made with Debian's ``/usr/bin/python3``
  (bookworm: Python 3.11); ``/opt/kioskhub/bin`` leads ``PATH`` and ``VIRTUAL_ENV`` names
  it, so ``python``, ``pip`` and ``jupyterhub-singleuser`` are the venv's. Add packages with
  ``/opt/kioskhub/bin/pip install`` (or ``uv pip install --python /opt/kioskhub/bin/python``).
- ``/opt/kioskhub/kioskhub-extensions`` holds ``kioskhub/extensions`` (on ``sys.path``
  through a ``.pth`` file in the venv); ``/opt/kioskhub/etc/jupyter/jupyter_server_config.d/
  kioskhub.json`` enables them.
- user ``jovyan``, uid 1000, gid 100 (Debian's ``users``), home ``/home/jovyan`` (also the
  working folder and where pods mount the user's home); the image ends as ``USER 1000:100``:
  a build FROM it that installs Debian packages switches to ``USER root`` and back.
- ``ENTRYPOINT ["/usr/bin/tini", "--"]``, ``CMD ["jupyterhub-singleuser"]``; pods give the
  command themselves.
- labels ``org.kioskhub.recipe`` and ``org.kioskhub.suite``.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

BASE_IMAGE_NAME = "localhost/kioskhub-base"
DEBIAN_IMAGE_NAME = "localhost/kioskhub-debian"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SUITE = "bookworm"
SERVER_PACKAGES = ("jupyterhub", "jupyterlab", "ipykernel", "nbgitpuller")
DASK_CLIENT_PACKAGES = ("dask-gateway", "dask", "distributed")
DASK_COMPARED_PACKAGES = ("cloudpickle", "msgpack", "tornado", "toolz", "numpy", "pandas", "lz4")
"""What distributed compares between client, scheduler and workers; pinned to the hub's
versions where the hub has them, so a client in the image meets the hub's workers quietly."""
IMAGE_USER = "jovyan"
IMAGE_UID = 1000
IMAGE_GID = 100
"""The account servers run as inside the image (gid 100 is Debian's ``users`` group)."""
IMAGE_HOME = "/home/jovyan"
IMAGE_PREFIX = "/opt/kioskhub"
EXTENSIONS_DIR = f"{IMAGE_PREFIX}/kioskhub-extensions"
SERVER_EXTENSIONS = (
    "kioskhub.extensions.memory_notice",
    "kioskhub.extensions.cull_notice",
    "kioskhub.extensions.workshop_notice",
    "kioskhub.extensions.data_reads_server",
    "kioskhub.extensions.gallery_publish",
    "kioskhub.extensions.gallery_fetch",
    "kioskhub.extensions.gallery_reexecute",
)
"""KioskHub's Jupyter server extensions: the image enables them for every server, the local
backend on every server's command line (a no-op where the environment lacks KioskHub's
extensions package), and fork servers import them ahead."""
EXTENSIONS_SOURCE = Path(__file__).resolve().parent.parent / "extensions"
RECIPE_VERSION = 2
"""Raise when the Containerfile below changes in a way that the digest would not see."""


def server_versions() -> dict[str, str]:
    """The hub's own versions of the packages a server needs (so hub and server agree)."""
    versions = {name: version(name) for name in SERVER_PACKAGES + DASK_CLIENT_PACKAGES}
    for name in DASK_COMPARED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def extension_files(source: Path = EXTENSIONS_SOURCE) -> dict[str, str]:
    """KioskHub's server extensions as they go into the image: file name → text."""
    return {path.name: path.read_text() for path in sorted(source.glob("*.py"))}


def server_config() -> str:
    """The image's ``jupyter_server_config.d/kioskhub.json``: KioskHub's extensions on."""
    enabled = {name: True for name in SERVER_EXTENSIONS}
    return json.dumps({"ServerApp": {"jpserver_extensions": enabled}}, indent=2, sort_keys=True)


def debian_mirror(sources: dict[str, str], suite: str = DEFAULT_SUITE) -> str:
    """The Debian mirror for ``suite`` among apt's sources (file name → text).

    Reads one-line ``.list`` files and deb822 ``.sources`` files, skips security and
    disabled entries, and prefers an entry that lists ``suite`` itself; falls back to
    deb.debian.org when apt names no Debian mirror.
    """
    candidates: list[tuple[str, list[str]]] = []
    for name in sorted(sources):
        text = sources[name]
        if name.endswith(".sources"):
            candidates += _deb822_entries(text)
        elif name.endswith(".list"):
            candidates += _one_line_entries(text)
    debian = [
        (uri.rstrip("/"), suites)
        for uri, suites in candidates
        if re.match(r"https?://", uri)
        and "security" not in uri
        and any(s.split("-")[0] == suite or s in ("stable", "testing") for s in suites)
    ]
    for uri, suites in debian:
        if suite in suites:
            return uri
    return debian[0][0] if debian else DEFAULT_MIRROR


def _one_line_entries(text: str) -> list[tuple[str, list[str]]]:
    entries = []
    for line in text.splitlines():
        line = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            entries.append((line[1], [line[2]]))
    return entries


def _deb822_entries(text: str) -> list[tuple[str, list[str]]]:
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        for uri in fields.get("uris", "").split():
            entries.append((uri, fields.get("suites", "").split()))
    return entries


def read_apt_sources(apt_dir: Path = Path("/etc/apt")) -> dict[str, str]:
    """apt's source files on this machine: sources.list and sources.list.d/*."""
    files = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]
    return {
        path.name: path.read_text(errors="replace")
        for path in files
        if path.is_file() and path.suffix in (".list", ".sources")
    }


@dataclass(frozen=True)
class BaseImageRecipe:
    """Everything that decides the base image's content, and the names it is stored under."""

    mirror: str = DEFAULT_MIRROR
    suite: str = DEFAULT_SUITE
    versions: dict[str, str] = field(default_factory=server_versions)
    extensions: dict[str, str] = field(default_factory=extension_files)

    @property
    def digest(self) -> str:
        """12 hex digits of the recipe; the mirror is left out (it serves the same suite)."""
        recipe = {
            "recipe": RECIPE_VERSION,
            "suite": self.suite,
            "versions": self.versions,
            "containerfile": self.containerfile("FROM"),
            "extensions": self.extensions,
        }
        text = json.dumps(recipe, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def debian_ref(self) -> str:
        """The imported minimal Debian, before Python and the server are added."""
        return f"{DEBIAN_IMAGE_NAME}:{self.suite}"

    @property
    def image_ref(self) -> str:
        return f"{BASE_IMAGE_NAME}:{self.digest}"

    def context_files(self) -> dict[str, str]:
        """The build context besides the Containerfile: relative path → text."""
        files = {f"extensions/{name}": text for name, text in self.extensions.items()}
        files["jupyter_server_config.json"] = server_config() + "\n"
        return files

    def containerfile(self, base: str | None = None) -> str:
        """The layer on top of the imported Debian: Python, the server, Dask's client,
        KioskHub's extensions, a non-root user."""
        packages = " ".join(f"{name}=={self.versions[name]}" for name in sorted(self.versions))
        return "\n".join(
            [
                f"FROM {base or self.debian_ref}",
                "ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8",
                "RUN apt-get update -qq \\",
                " && apt-get install -y -qq --no-install-recommends python3 python3-venv"
                " ca-certificates tini \\",
                " && rm -rf /var/lib/apt/lists/*",
                "# The host's trust store and package index, where the build is given them",
                "ARG PIP_CERT",
                "ARG PIP_INDEX_URL",
                f"RUN python3 -m venv {IMAGE_PREFIX} \\",
                f" && {IMAGE_PREFIX}/bin/pip install --no-cache-dir --progress-bar off"
                f" --disable-pip-version-check {packages}",
                f"COPY extensions/ {EXTENSIONS_DIR}/kioskhub/extensions/",
                "COPY jupyter_server_config.json"
                f" {IMAGE_PREFIX}/etc/jupyter/jupyter_server_config.d/kioskhub.json",
                f"RUN {IMAGE_PREFIX}/bin/python -c 'import pathlib, sysconfig;"
                ' pathlib.Path(sysconfig.get_paths()["purelib"], "kioskhub-extensions.pth")'
                f'.write_text("{EXTENSIONS_DIR}\\n")\'',
                f"RUN useradd --uid {IMAGE_UID} --gid {IMAGE_GID} --create-home"
                f" --shell /bin/bash {IMAGE_USER}",
                f"ENV PATH={IMAGE_PREFIX}/bin:/usr/local/bin:/usr/bin:/bin"
                f" VIRTUAL_ENV={IMAGE_PREFIX} HOME={IMAGE_HOME} SHELL=/bin/bash",
                f"USER {IMAGE_UID}:{IMAGE_GID}",
                f"WORKDIR {IMAGE_HOME}",
                'ENTRYPOINT ["/usr/bin/tini", "--"]',
                'CMD ["jupyterhub-singleuser"]',
                f'LABEL org.kioskhub.recipe="{RECIPE_VERSION}" org.kioskhub.suite="{self.suite}"',
                "",
            ]
        )
