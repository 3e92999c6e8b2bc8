"""Container builds: KioskHub's podman builder against a plain ``podman build``, same run.

A git repository in the shape Binder users write is made on disk: ``apt.txt`` (jq),
``requirements.txt``, a ``setup.py`` package and a ``postBuild``. KioskHub's
``PodmanImageBuilder`` (``kioskhub.image_builder.podman_image_builder``, the builder the
environments service runs, called through ``build(BuildRequest, BuildLog)``) builds it as a
fresh build identity: fetch, spec, copy into the build context, ``podman build --layers``,
``podman push`` to a registry on loopback (Debian's ``docker-registry``), digest recorded.
The baseline is ``podman build`` of the *same* Containerfile and context that the builder
writes, run directly as root, then ``podman push`` to the same registry. The base image's
layers are pushed to the registry before anything is timed, as a site's registry holds them
after its first build: otherwise whichever tool pushes first pays for uploading them.

- cold: no layer cache (``--no-cache`` for both; each cold build is a repository never built);
- no-change rebuild: the builder again on the same commit (the image is reused by its key);
- code-only change: a commit that changes a ``.py`` file; layers before the repository's
  files come from the cache (for both).

    .venv/bin/python -m benchmarks.container_build --samples 1
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kioskhub.hub.schema.builder import BuilderSettings
from kioskhub.image_builder.build_identity import identity_pool
from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.builder_base import BuildRequest
from kioskhub.image_builder.container_spec import detect_container_spec
from kioskhub.image_builder.image_recipe import image_recipe
from kioskhub.image_builder.podman_command import podman_env, podman_workdir
from kioskhub.image_builder.podman_image_builder import (
    BuildOptions,
    PodmanImageBuilder,
    package_access_args,
)
from kioskhub.image_builder.source_safety import check_repository_url
from kioskhub.spawner.pod_image import BaseImageRecipe
from tests.support.registry import LoopbackRegistry

from . import report
from .hubs import open_folder
from .stats import percentile, ratio, verdict, within

NAME = "container_build"
COLD_TOLERANCE = 0.20
NO_CHANGE_TARGET_S = 1.0
CODE_CHANGE_TARGET_S = 10.0
SETUP_PY = (
    'from setuptools import setup\nsetup(name="lab-tools", version="0.1", packages=["lab_tools"])\n'
)


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=B", "-c", "user.email=b@example.org", *args],
        check=True,
        capture_output=True,
    )


def make_repository(folder: Path, name: str, requirements: list[str]) -> Path:
    repo = folder / name
    (repo / "lab_tools").mkdir(parents=True)
    (repo / "apt.txt").write_text("jq\n")
    (repo / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (repo / "setup.py").write_text(SETUP_PY)
    (repo / "lab_tools" / "__init__.py").write_text(f"NAME = {name!r}\n")
    (repo / "postBuild").write_text("#!/bin/bash\necho built > ~/postbuild.txt\n")
    git(repo, "init", "--quiet")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "spec")
    return repo


def change_code(repo: Path, number: int) -> None:
    (repo / "lab_tools" / "analysis.py").write_text(f"VERSION = {number}\n")
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", f"code change {number}")


class TimedBuildLog(BuildLog):
    """A BuildLog that notes when the build and the push began (seconds after creation)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.perf_counter()
        self.marks: dict[str, float] = {}

    def progress(self, percent: int, phase: str) -> None:
        for word, mark in (("Building", "build"), ("Pushing", "push"), ("Ready", "ready")):
            if phase.startswith(word):
                self.marks[mark] = time.perf_counter() - self.started
        super().progress(percent, phase)

    def split(self) -> dict[str, float]:
        """Seconds before the build (fetch, copy, spec, key), of the build, of the push."""
        marks = self.marks
        if not {"build", "push", "ready"} <= set(marks):
            return {}
        return {
            "prepare": marks["build"],
            "build": marks["push"] - marks["build"],
            "push": marks["ready"] - marks["push"],
        }


async def builder_build(builder: PodmanImageBuilder, repo: Path, name: str):
    source = check_repository_url(
        str(repo), allowed_schemes=(), allowed_hosts=(), allow_local_paths=True
    )
    log = TimedBuildLog()
    started = time.perf_counter()
    try:
        artifact = await builder.build(BuildRequest(1, "bench", name, source), log)
    except Exception:
        print(log.text()[-3000:], flush=True)
        raise
    return time.perf_counter() - started, artifact, log


def plain_build(repo: Path, base: str, destination: str, *, cache: bool) -> tuple[float, float]:
    """``podman build`` of the builder's own Containerfile and context, then ``podman push``."""
    with tempfile.TemporaryDirectory(prefix="kioskhub-bench-plain-", dir="/var/tmp") as top:
        context = Path(top) / "context"
        shutil.copytree(
            repo, context / "repo", symlinks=True, ignore=shutil.ignore_patterns(".git")
        )
        recipe = image_recipe(detect_container_spec(repo), base)
        (context / "kioskhub").mkdir()
        for name, data in recipe.context_files.items():
            (context / "kioskhub" / name).write_bytes(data)
        (Path(top) / "Containerfile").write_text(recipe.containerfile)
        argv = ["podman", "build", "--layers", "--network", "private", *package_access_args()]
        argv += [] if cache else ["--no-cache"]
        argv += ["--tag", destination, "--file", f"{top}/Containerfile", str(context)]
        started = time.perf_counter()
        podman(argv)
        built = time.perf_counter()
        podman(["podman", "push", "--tls-verify=false", destination])
        return built - started, time.perf_counter() - built


def podman(argv: list[str]) -> None:
    result = subprocess.run(
        argv, env=podman_env(), cwd=podman_workdir(), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:3])} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}"
        )


async def measure(args, folder: Path, registry: LoopbackRegistry) -> list[dict]:
    base = BaseImageRecipe().image_ref
    settings = BuilderSettings()

    def builder(cache: bool) -> PodmanImageBuilder:
        options = BuildOptions(
            base_image=base,
            registry=f"{registry.host}/bench",
            registry_insecure=True,
            use_layer_cache=cache,
        )
        return PodmanImageBuilder(options, identities=identity_pool(settings))

    rows: list[dict] = []

    def note(case: str, tool: str, seconds: float, **extra) -> None:
        rows.append({"case": case, "tool": tool, "seconds": seconds, **extra})
        report.progress(f"  {case:28s} {tool:22s} {seconds:7.2f} s")

    # A site's registry holds the base image's layers from its first build on; pushing them
    # once here keeps whichever build pushes first from paying for them (podman mounts blobs
    # the registry already has into the new repository).
    podman(["podman", "push", "--tls-verify=false", base, f"{registry.host}/bench/base:latest"])
    report.progress("  pushed the base image's layers to the registry (not timed)")
    stamp = int(time.time())
    for sample in range(args.samples):
        order = ("builder", "plain") if sample % 2 == 0 else ("plain", "builder")
        for tool in order:
            repo = make_repository(folder, f"cold-{tool}-{stamp}-{sample}", args.requirements)
            if tool == "builder":
                seconds, artifact, log = await builder_build(builder(False), repo, repo.name)
                note(
                    "cold (no layer cache)",
                    "kioskhub builder",
                    seconds,
                    reference=artifact.image_ref,
                    **log.split(),
                )
            else:
                build, push = plain_build(
                    repo, base, f"{registry.host}/bench/plain-{sample}:{stamp}", cache=False
                )
                note(
                    "cold (no layer cache)",
                    "plain podman build+push",
                    build + push,
                    build=build,
                    push=push,
                )
    repo = make_repository(folder, f"warm-{stamp}", args.requirements)
    cached = builder(True)
    await builder_build(cached, repo, repo.name)
    for i in range(args.repeat):
        seconds, artifact, _ = await builder_build(cached, repo, repo.name)
        note("no-change rebuild", "kioskhub builder", seconds, reused=artifact.reused)
        change_code(repo, i + 1)
        seconds, artifact, log = await builder_build(cached, repo, repo.name)
        note(
            "code-only change",
            "kioskhub builder",
            seconds,
            cached_steps=log.text().count("--> Using cache"),
        )
        change_code(repo, 100 + i)
        build, push = plain_build(repo, base, f"{registry.host}/bench/plain-warm:{i}", cache=True)
        note("code-only change", "plain podman build+push", build + push, build=build, push=push)
    return rows


def median(rows: list[dict], case: str, tool: str) -> float | None:
    values = [r["seconds"] for r in rows if r["case"] == case and r["tool"] == tool]
    return percentile(values, 50) if values else None


def targets(rows: list[dict]) -> list[dict]:
    cold = median(rows, "cold (no layer cache)", "kioskhub builder")
    plain = median(rows, "cold (no layer cache)", "plain podman build+push")
    no_change = max((r["seconds"] for r in rows if r["case"] == "no-change rebuild"), default=None)
    code = max(
        (
            r["seconds"]
            for r in rows
            if r["case"] == "code-only change" and r["tool"] == "kioskhub builder"
        ),
        default=None,
    )
    checks = [
        {
            "target": f"cold build within ×{1 + COLD_TOLERANCE:.1f} of plain podman build+push",
            "ratio": ratio(cold, plain),
            "met": within(cold, plain, COLD_TOLERANCE),
        }
    ]
    if no_change is not None:
        checks.append(
            {
                "target": f"no-change rebuild under {NO_CHANGE_TARGET_S:.0f} s",
                "ratio": no_change / NO_CHANGE_TARGET_S,
                "met": no_change < NO_CHANGE_TARGET_S,
            }
        )
    if code is not None:
        checks.append(
            {
                "target": f"code-only change under {CODE_CHANGE_TARGET_S:.0f} s",
                "ratio": code / CODE_CHANGE_TARGET_S,
                "met": code < CODE_CHANGE_TARGET_S,
            }
        )
    return checks


def print_results(rows: list[dict], checks: list[dict], cond: dict) -> None:
    print()
    print(report.conditions_line(cond))
    table = []
    for r in rows:
        detail = ""
        if "prepare" in r:
            detail = f"fetch+copy {r['prepare']:.1f}, build {r['build']:.1f}, push {r['push']:.1f}"
        elif "build" in r:
            detail = f"build {r['build']:.1f}, push {r['push']:.1f}"
        elif "cached_steps" in r:
            detail = f"{r['cached_steps']} steps from the layer cache"
        elif "reused" in r:
            detail = "image reused" if r["reused"] else "built"
        table.append([r["case"], r["tool"], r["seconds"], detail])
    report.print_table(["case", "tool", "seconds", "details"], table, title="Container builds")
    for check in checks:
        ratio_text = "-" if check["ratio"] is None else f"×{check['ratio']:.2f}"
        print(f"target {check['target']}: {verdict(check['met'])} ({ratio_text})")


def plot(rows: list[dict], cond: dict) -> None:
    figure, axes = report.new_figure(1, width=9, height=4)
    ax = axes[0]
    colors = {"kioskhub builder": "tab:blue", "plain podman build+push": "tab:orange"}
    ax.barh(
        range(len(rows)),
        [r["seconds"] for r in rows],
        color=[colors.get(r["tool"], "gray") for r in rows],
    )
    ax.set_yticks(range(len(rows)), [f"{r['case']}\n{r['tool']}" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Container builds (apt.txt + requirements.txt + setup.py + postBuild)")
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


async def run_benchmark(args) -> dict:
    cond = report.conditions(
        requirements=list(args.requirements),
        base_image=BaseImageRecipe().image_ref,
        samples=args.samples,
        repeat=args.repeat,
    )
    print(report.conditions_line(cond), flush=True)
    folder = open_folder("container")
    registry = LoopbackRegistry(folder / "registry").start()
    try:
        rows = await measure(args, folder, registry)
    finally:
        registry.stop()
        shutil.rmtree(folder, ignore_errors=True)
    checks = targets(rows)
    print_results(rows, checks, cond)
    result = {"benchmark": NAME, "conditions": cond, "rows": rows, "targets": checks}
    report.write_json(NAME, result)
    plot(rows, cond)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--requirements", nargs="+", default=["tomli-w"], help="lines of requirements.txt"
    )
    p.add_argument(
        "--samples", type=int, default=1, help="cold builds of each, alternating which goes first"
    )
    p.add_argument("--repeat", type=int, default=1, help="no-change and code-only rebuilds")
    return p


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run_benchmark(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
