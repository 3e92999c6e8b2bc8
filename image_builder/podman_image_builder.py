"""The container builder: a repository → an OCI image on the site base image, with podman.

No daemon and no registry outside: ``podman build --layers`` of the Containerfile that
``image_recipe`` writes, on the site base image (``kioskhub image build-base``), then
``podman push`` to the site's registry, recorded by digest (``--digestfile``).

Who does what:

- the build's own identity (``build_identity``) fetches the repository and copies the
  checkout into the build context's ``repo/`` folder (``cp -P``: links stay links); then every
  process of that identity is ended, so nothing changes the context while root reads it;
- root (the builder service) reads the spec files as data (``checkout_files``), writes the
  Containerfile and ``kioskhub/`` beside them, hashes the copied tree without following links,
  and runs podman;
- the Containerfile's RUN steps (pip, ``setup.py``, ``postBuild``) are the untrusted part: they
  run in the build container as the image's user (jovyan), in the identity's cgroup
  (``--cgroup-parent``: its memory, CPU and pids limits) with ``--memory`` too, on the
  network the site allows, with no host folder mounted (only the host's CA bundle, read-only,
  for pip behind a TLS-inspecting proxy). apt.txt's packages (validated names) install as root.

Before the image build, the repository's files at the commit are kept on this machine for
the servers launched from the image (``repository_files.keep_image_files``), as the local
builder keeps them in a venv; a user's are closed to an environment group of their own.

Images are tagged with a key of everything that goes into them (``image_recipe.image_key``):
an unchanged repository reuses its image without building, a changed one reuses every layer
before the first changed step.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from .build_identity import IdentityPool, venv_gids
from .build_log import BuildLog
from .build_sandbox import BuildAccount, give_to, make_workdir, minimal_environment, remove_tree
from .build_sandbox import run_step as run_as_account
from .builder_base import Artifact, BuildFailed, BuildRequest, EnvironmentBuilder
from .container_spec import ContainerSpec, detect_container_spec
from .git_checkout import fetch_for_build
from .image_build_output import failure_message
from .image_recipe import ImageRecipe, image_key, image_recipe
from .podman_command import find_podman, run_podman, start_podman
from .repository_files import keep_image_files

HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
HOST_CA_IN_BUILD = "/run/kioskhub-host-ca.crt"
NAME_PART = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class BuildOptions:
    """What the site allows a container build (from ``builder:``)."""

    base_image: str
    registry: str = ""
    registry_insecure: bool = False
    allow_dockerfile: bool = False
    network: str = "private"
    memory_mb: int = 4096
    timeout: float = 1800
    use_layer_cache: bool = True
    python_policy: str = "refuse"


@dataclass(frozen=True)
class BuiltImage:
    """The image a build made: its local name, the pinned reference and the digest."""

    image: str
    reference: str
    digest: str
    key: str = ""
    reused: bool = False
    notes: tuple[str, ...] = ()


def image_name(owner: str, name: str) -> str:
    """The image's name for an environment: kioskhub-env/<owner>-<name>, lowercase."""
    return "kioskhub-env/" + NAME_PART.sub("-", f"{owner}-{name}".lower()).strip("-.")


def split_tag(name: str) -> tuple[str, str | None]:
    """'repo/name:tag' → ('repo/name', 'tag'); a registry's port is not a tag."""
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        base, tag = name.rsplit(":", 1)
        return base, tag
    return name, None


def cgroup_parent(folder: str, proc_mounts: str) -> str:
    """The cgroup path podman takes for ``--cgroup-parent`` from a group's folder. Pure."""
    best = ""
    for line in proc_mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] in ("cgroup", "cgroup2"):
            mount = fields[1].rstrip("/")
            if folder.startswith(mount + "/") and len(mount) > len(best):
                best = mount
    return "/" + folder[len(best) :].strip("/") if best else ""


def tree_hash(folder: Path) -> str:
    """A digest of a folder's names, modes, file contents and link targets; links not followed."""
    digest = hashlib.sha256()
    for top, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            path = os.path.join(top, name)
            relative = os.path.relpath(path, folder)
            status = os.lstat(path)
            digest.update(f"{relative}\0{stat.S_IMODE(status.st_mode):o}\0".encode())
            if stat.S_ISLNK(status.st_mode):
                digest.update(b"link\0" + os.readlink(path).encode())
            elif stat.S_ISREG(status.st_mode):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as file:
                    for block in iter(lambda: file.read(1 << 20), b""):
                        digest.update(block)
            digest.update(b"\0")
    return digest.hexdigest()


class PodmanImageBuilder(EnvironmentBuilder):
    """Builds images with podman on the site base image; the artifact is a pinned reference.

    With ``environments_dir``, the repository's files at the built commit are kept there for
    the servers launched from the image (``repository_files``).
    """

    kind = "container"

    def __init__(
        self,
        options: BuildOptions,
        *,
        identities: IdentityPool,
        environments_dir: Path | None = None,
    ) -> None:
        self.options = options
        self.identities = identities
        self.environments_dir = environments_dir
        self._locks: dict[str, asyncio.Lock] = {}

    async def build(self, request: BuildRequest, log: BuildLog) -> Artifact:
        in_use: set[int] = set()
        if self.environments_dir is not None:  # no build identity gets an environment's group
            in_use = await asyncio.to_thread(venv_gids, self.environments_dir)
        async with self.identities.identity("container", in_use) as account:
            work = make_workdir(account)
            account = account.seeing(work, request.source.local_path, self.environments_dir)
            try:
                env = minimal_environment(work)
                checkout, folder = await fetch_for_build(
                    request, work, log=log, account=account, env=env
                )
                log.line(f"Commit {checkout.commit_sha}")
                await self._keep_files(checkout.commit_sha, request, work, log, account)
                built = await self.build_folder(
                    folder, image_name(request.owner, request.name), log=log, account=account
                )
            finally:
                await asyncio.to_thread(account.end_processes)
                remove_tree(work)
        return Artifact(
            checkout.commit_sha,
            built.key,
            image_ref=built.reference,
            image_digest=built.digest,
            reused=built.reused,
            notes=list(built.notes),
        )

    async def _keep_files(
        self, commit: str, request: BuildRequest, work: Path, log: BuildLog, account: BuildAccount
    ) -> None:
        """Before the image build: once podman has made cgroups below the build's, no step
        of the build's identity can enter its cgroup any more."""
        if self.environments_dir is not None:
            await keep_image_files(
                self.environments_dir,
                commit,
                request,
                work=work,
                log=log,
                account=account,
                take_group=self.identities.take_group,
            )

    async def build_folder(
        self,
        folder: Path,
        name: str,
        *,
        log: BuildLog,
        account: BuildAccount,
        repository: str | None = None,
    ) -> BuiltImage:
        """Build the checkout in ``folder`` as image ``name`` (``name:tag`` keeps its tag).

        The image is pushed to ``repository`` (default: below the site's registry, if any).
        """
        find_podman()
        top = Path(tempfile.mkdtemp(prefix="kioskhub-image-", dir="/var/tmp"))
        try:
            os.chmod(top, 0o711)
            context = top / "context"
            context.mkdir(mode=0o711)
            await self._copy_checkout(
                folder, give_to(context / "repo", account, 0o755), log, account
            )
            # Read from the copy, which no process can change any more: what is read is built.
            log.progress(18, "Reading the repository's spec")
            spec = detect_container_spec(
                context / "repo",
                allow_dockerfile=self.options.allow_dockerfile,
                python_policy=self.options.python_policy,
            )
            log.line("Found: " + ", ".join(spec.summary()))
            for note in spec.notes:
                log.line(f"Note: {note}")
            recipe = None if spec.dockerfile else image_recipe(spec, self.options.base_image)
            key = image_key(
                recipe,
                self.options.base_image,
                await asyncio.to_thread(tree_hash, context / "repo"),
            )
            base, tag = split_tag(name)
            keyed = f"{base}:{key}"
            async with self._locks.setdefault(key, asyncio.Lock()):
                reused = (await run_podman("image", "exists", keyed)).returncode == 0
                if reused:
                    log.progress(80, f"Reusing the image built from the same content: {keyed}")
                else:
                    await self._podman_build(top, context, spec, recipe, keyed, log, account)
                if tag:
                    await _podman_checked(log, "tag", keyed, name)
                built = await self._publish(keyed, repository, base, tag or key, log, reused)
                return replace(built, key=key, notes=spec.notes)
        finally:
            remove_tree(top)

    async def _copy_checkout(
        self, folder: Path, repo: Path, log: BuildLog, account: BuildAccount
    ) -> None:
        """Copy the checkout into the context as the build's identity, then end its processes."""
        log.progress(15, "Copying the repository into the build context")
        account = account.seeing(folder, repo)
        env = minimal_environment(repo)
        for argv in (
            ["cp", "-R", "-P", "--preserve=mode,timestamps", f"{folder}/.", str(repo)],
            ["rm", "-rf", str(repo / ".git")],
        ):
            status, output = await run_as_account(
                argv, log=log, account=account, cwd=repo, env=env, echo=False
            )
            if status != 0:
                raise BuildFailed(f"copying the repository failed: {output[-300:]}")
        await asyncio.to_thread(account.end_processes)

    async def _podman_build(
        self,
        top: Path,
        context: Path,
        spec: ContainerSpec,
        recipe: ImageRecipe | None,
        keyed: str,
        log: BuildLog,
        account: BuildAccount,
    ) -> None:
        if recipe is None:
            containerfile, context = context / "repo" / spec.prefix / "Dockerfile", context / "repo"
            log.line("Building the repository's own Dockerfile (the site allows it).")
        else:
            kioskhub = context / "kioskhub"
            kioskhub.mkdir(mode=0o755)
            for file, data in recipe.context_files.items():
                (kioskhub / file).write_bytes(data)
            containerfile = top / "Containerfile"
            containerfile.write_text(recipe.containerfile)
        argv = self.build_argv(containerfile, context, keyed, account)
        log.progress(20, f"Building {keyed} with podman on {self.options.base_image}")
        status, output = await stream_podman(argv, log, timeout=self.options.timeout)
        if status != 0:
            raise BuildFailed(failure_message(output, recipe, spec, status))

    def build_argv(
        self, containerfile: Path, context: Path, tag: str, account: BuildAccount
    ) -> list[str]:
        """podman build's arguments: layers, limits, network, the CA bundle, the tag."""
        memory = f"{self.options.memory_mb}m"
        argv = ["build", "--layers", "--force-rm", "--network", self.options.network]
        if not self.options.use_layer_cache:
            argv.append("--no-cache")
        argv += ["--memory", memory, "--memory-swap", memory]
        if account.cgroup is not None:
            with open("/proc/self/mounts") as mounts:
                parent = cgroup_parent(account.cgroup.folders[0], mounts.read())
            if parent:
                argv += ["--cgroup-parent", parent]
        argv += package_access_args()
        return [*argv, "--tag", tag, "--file", str(containerfile), str(context)]

    async def _publish(
        self, keyed: str, repository: str | None, base: str, tag: str, log: BuildLog, reused: bool
    ) -> BuiltImage:
        """Push to the registry (pinned by the pushed digest), or name the local image."""
        if repository is None and self.options.registry:
            repository = push_repository(self.options.registry, base)
        if repository is None:
            image_id = await _podman_checked(log, "image", "inspect", "--format", "{{.Id}}", keyed)
            digest = "sha256:" + image_id.strip().removeprefix("sha256:")
            log.progress(100, f"Ready: {keyed} (in this machine's podman storage)")
            return BuiltImage(keyed, keyed, digest, reused=reused)
        return await push_image(
            keyed,
            f"{repository}:{tag}",
            log,
            insecure=self.options.registry_insecure,
            reused=reused,
        )


def push_repository(registry: str, base: str) -> str:
    """Where ``base`` goes in ``registry``: its last path part below the registry's path."""
    return f"{registry.rstrip('/')}/{base.rsplit('/', 1)[-1]}"


async def push_image(
    local: str, destination: str, log: BuildLog, *, insecure: bool, reused: bool = False
) -> BuiltImage:
    """``podman push local destination`` and the reference pinned by the pushed digest."""
    log.progress(90, f"Pushing to {destination}")
    with tempfile.TemporaryDirectory(prefix="kioskhub-push-") as folder:
        digest_file = Path(folder) / "digest"
        await _podman_checked(
            log,
            "push",
            f"--tls-verify={'false' if insecure else 'true'}",
            "--digestfile",
            str(digest_file),
            local,
            f"docker://{destination}",
        )
        digest = digest_file.read_text().strip()
    repository = split_tag(destination)[0]
    log.progress(100, f"Ready: {repository}@{digest}")
    return BuiltImage(destination, f"{repository}@{digest}", digest, reused=reused)


def package_access_args(env: dict[str, str] | None = None) -> list[str]:
    """The host's CA bundle (read-only) and package index for the build's pip."""
    env = dict(os.environ if env is None else env)
    bundle = next(
        (p for p in (env.get("PIP_CERT"), HOST_CA_BUNDLE) if p and Path(p).is_file()), None
    )
    argv = []
    if bundle:
        argv += ["--volume", f"{bundle}:{HOST_CA_IN_BUILD}:ro"]
        argv += ["--build-arg", f"PIP_CERT={HOST_CA_IN_BUILD}"]
    index = env.get("PIP_INDEX_URL", "")
    if index.startswith(("http://", "https://")):
        argv += ["--build-arg", f"PIP_INDEX_URL={index}"]
    return argv


async def _podman_checked(log: BuildLog, *args: str) -> str:
    result = await run_podman(*args, timeout=600)
    if result.returncode != 0:
        last = [line for line in result.output.splitlines() if line.strip()][-3:]
        raise BuildFailed(f"podman {args[0]} failed: " + " / ".join(last))
    return result.output


async def stream_podman(argv: list[str], log: BuildLog, *, timeout: float) -> tuple[int, str]:
    """Run ``podman ARGV``, each output line into ``log``; a timeout stops it and fails."""
    log.line("$ podman " + " ".join(argv))
    process = await start_podman(*argv)
    output: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            assert process.stdout is not None
            async for raw in process.stdout:
                text = raw.decode(errors="replace").rstrip("\n")
                output.append(text)
                log.line(text)
            status = await process.wait()
    except (TimeoutError, asyncio.CancelledError) as error:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()
        if isinstance(error, TimeoutError):
            raise BuildFailed(
                f"the image build took longer than {timeout:.0f} s and was stopped"
            ) from None
        raise
    return status, "\n".join(output)


async def build_source_folder(
    folder: Path,
    name: str,
    options: BuildOptions,
    identities: IdentityPool,
    log: BuildLog,
    *,
    repository: str | None = None,
) -> BuiltImage:
    """Build a folder that is already checked out (CI's checkout), as a fresh build identity."""
    if not folder.is_dir():
        raise BuildFailed(f"{folder} is not a folder: give the checked-out repository's folder")
    async with identities.identity("container") as account:
        builder = PodmanImageBuilder(options, identities=identities)
        return await builder.build_folder(
            folder.resolve(), name, log=log, account=account, repository=repository
        )
