"""Environment builds: KioskHub's local builder against plain ``uv pip install`` and ``pip``.

A git repository with a ``requirements.txt`` is made on disk. KioskHub's ``LocalBuilder``
(``kioskhub.image_builder.local_builder``, the builder that the environments service runs, called
through its documented ``build(BuildRequest, BuildLog)``) builds it as the build account:
fetch, spec, ``uv venv`` as a clone of the server layer (prepared once per hub version:
the server packages installed, compiled and tested), ``uv pip install`` of the server
packages at the hub's versions plus the requirements, seal, smoke test. The baselines
install the *same* packages (the server packages pinned as the builder pins them, plus
``-r requirements.txt``) into a fresh venv, with no smoke test. One site is simulated: one
environments folder and one builder cache, one uv cache.

- first build, empty caches: the site's first build ever, so the builder also prepares its
  server layer; each tool's download cache starts empty (pip with ``--no-cache-dir``);
- new repository, warm caches: a repository the site has not built before, with the same
  requirements; the builder has its layer and cache from the first build, uv its cache
  from its first install. This is the state of a site in use, and the target is checked
  here;
- warm rebuild: the builder again on the same commit (the venv is reused by content hash);
- code-only change: a commit that changes a ``.py`` file only (the spec is unchanged, so the
  venv is reused);
- server imports: how long an account that cannot write into the venv (as the users'
  accounts cannot write into a sealed one) takes to import the server's modules, in the
  built venv (bytecode from the server layer) and in the plain uv venv (uv writes no
  bytecode by default; pip does).

    .venv/bin/python -m benchmarks.environment_builds --requirements tomli-w requests
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kioskhub.image_builder.build_log import BuildLog
from kioskhub.image_builder.builder_base import Artifact, BuildRequest
from kioskhub.image_builder.local_builder import LocalBuilder, server_requirements
from kioskhub.image_builder.source_safety import check_repository_url

from . import report
from .hubs import open_folder
from .stats import percentile, ratio, verdict, within

NAME = "environment_builds"
COLD_TOLERANCE = 0.20
WARM_TARGET_S = 1.0
DEFAULT_REQUIREMENTS = ("tomli-w", "requests", "python-dateutil")
SERVER_IMPORTS = "import jupyterhub.singleuser, jupyter_server.serverapp, jupyterlab"
NOBODY = 65534
UV = shutil.which("uv") or str(Path(sys.executable).parent / "uv")


class TimedBuildLog(BuildLog):
    """A BuildLog that also notes when each phase began (seconds after creation)."""

    def __init__(self) -> None:
        super().__init__()
        self.phases: list[tuple[str, float]] = []
        self._t0 = time.perf_counter()

    def progress(self, percent: int, phase: str) -> None:
        self.phases.append((phase, time.perf_counter() - self._t0))
        super().progress(percent, phase)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Bench", "-c", "user.email=bench@example.org",
         *args],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def make_repository(folder: Path, requirements: list[str]) -> Path:
    repo = folder / "analysis-repo"
    repo.mkdir()
    git(repo, "init", "--quiet")
    (repo / "requirements.txt").write_text("\n".join(requirements) + "\n")
    (repo / "analysis.py").write_text("VERSION = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "An analysis environment")
    return repo


async def builder_build(repo: Path, environments: Path, cache: Path, build_id: int):
    """One LocalBuilder build of ``repo``; returns (seconds, artifact, phases)."""
    source = check_repository_url(
        str(repo), allowed_schemes=("https",), allowed_hosts=(), allow_local_paths=True
    )
    builder = LocalBuilder(environments_dir=environments, cache_dir=cache)
    request = BuildRequest(build_id=build_id, owner="bench", name="analysis", source=source)
    log = TimedBuildLog()
    started = time.perf_counter()
    try:
        artifact: Artifact = await builder.build(request, log)
    except Exception:
        print(log.text()[-3000:], flush=True)
        raise
    seconds = time.perf_counter() - started
    return seconds, artifact, phase_durations(log.phases, seconds)


def phase_durations(phases: list[tuple[str, float]], total: float) -> dict[str, float]:
    """Each phase's duration from the phase start times of a TimedBuildLog."""
    durations = {}
    for (name, start), nxt in zip(phases, [*phases[1:], ("end", total)], strict=True):
        durations[_phase_key(name)] = nxt[1] - start
    return durations


PHASES = {"Fetching": "fetch", "Reading": "spec", "Preparing": "server layer",
          "Creating": "venv", "Installing": "install", "postBuild": "postBuild",
          "Smoke": "smoke test", "Reusing": "reuse", "Ready": "ready"}


def _phase_key(phase: str) -> str:
    for key, label in PHASES.items():
        if phase.startswith(key) or key in phase:
            return label
    return phase[:30]


def plain_install(tool: str, venv: Path, requirements: Path | None, cache: Path | None) -> float:
    """Seconds to make ``venv`` and install the server packages plus ``requirements``."""
    packages = [*server_requirements(), *(["-r", str(requirements)] if requirements else [])]
    env = dict(os.environ)
    started = time.perf_counter()
    if tool == "uv":
        env["UV_CACHE_DIR"] = str(cache)
        run([UV, "venv", "--quiet", "--python", sys.executable, str(venv)], env)
        run([UV, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
             *packages], env)
    else:
        run([sys.executable, "-m", "venv", str(venv)], env)
        cache_args = ["--cache-dir", str(cache)] if cache else ["--no-cache-dir"]
        run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             *cache_args, *packages], env)
    return time.perf_counter() - started


def import_seconds(venv: Path) -> float:
    """Seconds for an account that cannot write into ``venv`` to import the server modules
    (what each server start pays before it listens); the best of two."""
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        subprocess.run([str(venv / "bin" / "python"), "-c", SERVER_IMPORTS], check=True,
                       user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                       env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
        best = min(best, time.perf_counter() - started)
    return best


def count_pyc(venv: Path) -> int:
    return sum(1 for _ in venv.rglob("*.pyc"))


def run(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} … failed: {result.stderr[-1500:]}")


CASES = {
    "empty": "first build, empty caches",
    "warm": "new repository, warm caches",
}


async def measure(args, folder: Path) -> list[dict]:
    repo = make_repository(folder, args.requirements)
    requirements = repo / "requirements.txt"
    rows: list[dict] = []

    def note(case: str, tool: str, seconds: float, **extra) -> None:
        rows.append({"case": case, "tool": tool, "seconds": seconds, **extra})
        report.progress(f"  {case:30s} {tool:16s} {seconds:7.2f} s")

    # One site: one environments folder (with its server layer) and one download cache
    # for the builder, one cache for uv; each cold case is a repository the site has not
    # built before.
    environments, builder_cache = folder / "environments", folder / "builder-cache"
    uv_cache = folder / "uv-cache"
    build_id = 0
    if args.cache_states[0] == "warm":
        report.progress("a site in use (untimed): the builder builds another repository once, "
                        "uv installs the server packages once")
        build_id += 1
        await builder_build(new_repository(repo, "a-first-repository"), environments,
                            builder_cache, build_id)
        plain_install("uv", folder / "uv-venv-prime", None, uv_cache)
    for cache_state in args.cache_states:
        case = CASES[cache_state]
        samples = 1 if cache_state == "empty" else args.samples
        for sample in range(samples):
            build_id += 1
            source = repo if build_id == 1 else new_repository(repo, f"repository-{build_id}")
            # Alternate which tool goes first, so that neither always meets a busier machine.
            order = ("builder", "uv") if sample % 2 == 0 else ("uv", "builder")
            for tool in order:
                if tool == "builder":
                    report.progress(f"{case}: KioskHub local builder")
                    seconds, artifact, phases = await builder_build(
                        source, environments, builder_cache, build_id)
                    note(case, "kioskhub builder", seconds, phases=phases,
                         reused=artifact.reused)
                else:
                    report.progress(f"{case}: plain uv pip install")
                    note(case, "uv pip install", plain_install(
                        "uv", folder / f"uv-venv-{build_id}", requirements, uv_cache))
        if cache_state == "empty" or args.pip_warm:
            report.progress(f"{case}: plain pip install")
            pip_cache = folder / "pip-cache" if args.pip_warm else None
            note(case, "pip install",
                 plain_install("pip", folder / f"pip-venv-{build_id}", requirements, pip_cache))
    if args.imports:
        built = artifact.venv_path
        report.progress("server imports as a user account: the built venv, the plain uv venv")
        note("server imports, built venv", "python (as nobody)", import_seconds(Path(built)),
             pyc_files=count_pyc(Path(built)))
        plain_venv = folder / f"uv-venv-{build_id}"
        note("server imports, uv venv", "python (as nobody)", import_seconds(plain_venv),
             pyc_files=count_pyc(plain_venv))
    for i in range(args.repeat):
        build_id += 1
        report.progress(f"warm rebuild, no change ({i + 1}/{args.repeat})")
        seconds, artifact, phases = await builder_build(repo, environments, builder_cache,
                                                        build_id)
        note("warm rebuild, no change", "kioskhub builder", seconds, phases=phases,
             reused=artifact.reused)
        (repo / "analysis.py").write_text(f"VERSION = {i + 2}\n")
        git(repo, "commit", "--quiet", "-am", f"Code change {i + 1}")
        build_id += 1
        report.progress(f"rebuild after a code-only change ({i + 1}/{args.repeat})")
        seconds, artifact, phases = await builder_build(repo, environments, builder_cache,
                                                        build_id)
        note("code-only change", "kioskhub builder", seconds, phases=phases,
             reused=artifact.reused)
    return rows


def new_repository(repo: Path, name: str) -> Path:
    """Another user's repository with the same requirements (a comment makes its spec new)."""
    other = repo.parent / name
    shutil.copytree(repo, other)
    requirements = other / "requirements.txt"
    requirements.write_text(f"# {name}\n" + requirements.read_text())
    git(other, "commit", "--quiet", "-am", f"Requirements of {name}")
    return other


def targets(rows: list[dict]) -> list[dict]:
    """The targets, plus the first build's ratio (a one-time cost, so not a target)."""
    checks = []
    for state, case in CASES.items():
        builder = median_of(rows, case, "kioskhub builder")
        uv = median_of(rows, case, "uv pip install")
        if builder is None or uv is None:
            continue
        if state == "warm":
            checks.append({"target": f"{case}: builder's median within {COLD_TOLERANCE:.0%} "
                                     "of plain uv's",
                           "ratio": ratio(builder, uv), "met": within(builder, uv, COLD_TOLERANCE)})
        else:
            checks.append({"target": f"{case} (prepares the server layer once; no target)",
                           "ratio": ratio(builder, uv), "met": None})
    warm = [r["seconds"] for r in rows if r["case"] == "warm rebuild, no change"]
    if warm:
        checks.append({"target": f"warm rebuild under {WARM_TARGET_S:.0f} s",
                       "ratio": max(warm) / WARM_TARGET_S, "met": max(warm) < WARM_TARGET_S})
    return checks


def median_of(rows: list[dict], case: str, tool: str) -> float | None:
    """The median seconds of ``tool`` in ``case`` (None when it was not measured)."""
    times = [r["seconds"] for r in rows if r["case"] == case and r["tool"] == tool]
    return percentile(times, 50) if times else None


def print_results(rows: list[dict], checks: list[dict], cond: dict) -> None:
    print()
    print(report.conditions_line(cond))
    table = []
    for r in rows:
        phases = r.get("phases") or {}
        detail = ", ".join(f"{k} {v:.1f}" for k, v in phases.items() if v >= 0.05)
        if "pyc_files" in r:
            detail = f"{r['pyc_files']} .pyc files in the venv"
        table.append([r["case"], r["tool"], r["seconds"], detail])
    report.print_table(["case", "tool", "seconds", "details (builder phases in s)"], table,
                       title="Environment builds")
    for check in checks:
        ratio_text = "-" if check["ratio"] is None else f"×{check['ratio']:.2f}"
        if check["met"] is None:
            print(f"{check['target']}: {ratio_text}")
        else:
            print(f"target {check['target']}: {verdict(check['met'])} ({ratio_text})")


def plot(rows: list[dict], cond: dict) -> None:
    figure, axes = report.new_figure(1, width=9, height=4.5)
    ax = axes[0]
    labels = [f"{r['case']}\n{r['tool']}" for r in rows]
    colors = {"kioskhub builder": "tab:blue", "uv pip install": "tab:green",
              "pip install": "tab:orange"}
    ax.barh(range(len(rows)), [r["seconds"] for r in rows],
            color=[colors.get(r["tool"], "gray") for r in rows])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Environment builds (requirements.txt repository)")
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


async def run_benchmark(args) -> dict:
    cond = report.conditions(requirements=list(args.requirements),
                             server_packages=list(server_requirements()),
                             cache_states=list(args.cache_states), repeat=args.repeat)
    print(report.conditions_line(cond), flush=True)
    folder = open_folder("builds")
    os.chmod(folder, 0o755)
    try:
        rows = await measure(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    checks = targets(rows)
    print_results(rows, checks, cond)
    result = {"benchmark": NAME, "conditions": cond, "rows": rows, "targets": checks}
    report.write_json(NAME, result)
    plot(rows, cond)
    return result


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requirements", nargs="+", default=list(DEFAULT_REQUIREMENTS),
                   help="lines of the repository's requirements.txt")
    p.add_argument("--cache-states", nargs="+", choices=("empty", "warm"),
                   default=["empty", "warm"],
                   help="cold builds to run, in this order: empty (the site's first build, "
                   "every cache empty), warm (a new repository on a site in use)")
    p.add_argument("--samples", type=int, default=3,
                   help="builds of a new repository on a site in use, and as many uv "
                   "installs, alternating which goes first; the target uses the medians (3)")
    p.add_argument("--pip-warm", action="store_true",
                   help="give pip a cache too (and time it for the warm-cache case)")
    p.add_argument("--no-imports", dest="imports", action="store_false",
                   help="skip timing the server imports in the built venv (with and "
                   "without bytecode)")
    p.add_argument("--repeat", type=int, default=1,
                   help="warm rebuilds and code-only changes to time (1)")
    return p


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run_benchmark(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
