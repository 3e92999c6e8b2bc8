"""What every benchmark prints and stores: progress lines, conditions, tables, JSON and PNG.

Each figure goes out with the conditions it was measured under (commit, package versions,
cores, load, the benchmark's own sizes such as N and C), on the terminal and in
``benchmarks/results/<name>.json``; plots go to ``benchmarks/results/<name>.png``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("KIOSKHUB_BENCH_RESULTS") or REPO / "benchmarks" / "results")
"""Where JSON and PNG files go; set ``KIOSKHUB_BENCH_RESULTS`` to keep trial runs apart."""
PACKAGES = (
    "jupyterhub",
    "jupyter_server",
    "jupyterlab",
    "ipykernel",
    "tornado",
    "sqlalchemy",
    "dask",
    "distributed",
    "dask-gateway",
    "dask-gateway-server",
    "uv",
    "pip",
)
_STARTED = time.monotonic()


def progress(message: str) -> None:
    """One line of progress, stamped with the seconds since the script started."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", flush=True)


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    proxy = shutil.which("configurable-http-proxy") or str(
        REPO / "node_modules" / ".bin" / "configurable-http-proxy"
    )
    found["configurable-http-proxy"] = _output([proxy, "--version"])
    found["python"] = platform.python_version()
    return found


def git_commit() -> dict[str, Any]:
    """The checkout's commit, and whether the working tree differs from it."""
    sha = _output(["git", "-C", str(REPO), "rev-parse", "HEAD"])
    changes = _output(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return {"sha": sha, "dirty": bool(changes)}


def machine() -> dict[str, Any]:
    memory = psutil.virtual_memory()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory.total / 2**30, 1),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "root": os.geteuid() == 0,
    }


def conditions(**parameters: Any) -> dict[str, Any]:
    """Everything a figure depends on besides the code path it measures."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "versions": package_versions(),
        "machine": machine(),
        "parameters": parameters,
    }


def conditions_line(cond: dict[str, Any]) -> str:
    """One paragraph of conditions to print above a table."""
    commit = cond["commit"]
    dirty = " (+ uncommitted changes)" if commit["dirty"] else ""
    sha = (commit["sha"] or "unknown")[:10] + dirty
    versions = ", ".join(f"{k} {v}" for k, v in cond["versions"].items() if v)
    mach = cond["machine"]
    load = " ".join(str(x) for x in mach["load_average"])
    params = ", ".join(f"{k}={v}" for k, v in cond["parameters"].items())
    return (
        f"conditions: commit {sha}; {mach['cores']} cores, {mach['memory_gib']} GiB, "
        f"load {load} at start; {params}\n  versions: {versions}"
    )


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """An aligned text table (numbers with 2 decimals); printed and returned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                               for c, w in zip(row, widths, strict=True)))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    progress(f"wrote {_shown(path)}")
    return path


def save_figure(name: str, figure) -> Path:
    """Write a matplotlib figure as ``results/<name>.png`` and close it."""
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.png"
    figure.tight_layout(rect=(0, 0.05, 1, 1))  # room for the conditions caption
    figure.savefig(path, dpi=110)
    plt.close(figure)
    progress(f"wrote {_shown(path)}")
    return path


def new_figure(columns: int = 1, width: float = 6.0, height: float = 4.0):
    """A figure with ``columns`` axes side by side, drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return figure, list(axes[0])


def caption(cond: dict[str, Any]) -> str:
    """A short conditions line to print under a plot."""
    commit = cond["commit"]
    sha = (commit["sha"] or "?")[:10] + ("+" if commit["dirty"] else "")
    v = cond["versions"]
    params = ", ".join(f"{k}={val}" for k, val in cond["parameters"].items())
    return (
        f"{cond['date']} · commit {sha} · {cond['machine']['cores']} cores · "
        f"jupyterhub {v.get('jupyterhub')}, jupyter_server {v.get('jupyter_server')} · {params}"
    )


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _numeric(text: str) -> bool:
    try:
        float(text.rstrip("%sx"))
    except ValueError:
        return False
    return True


def _output(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None
