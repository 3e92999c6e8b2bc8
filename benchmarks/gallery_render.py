"""Rendering published notebooks, ordinary and hostile: seconds, peak memory and page size.

Sides (``--sides``), the same notebook bytes, each render in a fresh process of its own
(so peak RSS is the render's), stopped after ``--limit`` seconds:

- ``kioskhub``: ``kioskhub.hub.gallery.render.render_notebook`` with its default limits.
- ``nbconvert``: nbconvert's ``HTMLExporter`` (``lab`` template, ``sanitize_html=True``) on
  ``nbformat.reads`` of the same bytes: what a service rendering with nbconvert alone does.

Cases: ``ordinary`` (60 cells: code, markdown, text and a PNG each), ``million-cells``
(1,000,000 one-line raw cells), ``dense-code`` (8 MiB of code), ``markdown`` (8 MiB of
markdown with inline HTML), ``ansi`` (8 MiB of coloured terminal output), ``nested-markdown``
(deeply nested lists and emphasis, 30 MiB).

Target: every case of the ``kioskhub`` side within 10 s and 1 GiB on one core.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time

from . import report

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg=="
)
MIB = 2**20


def _notebook(cells: list[dict]) -> bytes:
    return json.dumps({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": cells}).encode()


def _code(source: str, outputs: list | None = None) -> dict:
    return {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": source,
            "outputs": outputs or []}  # fmt: skip


def _markdown(source: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def case(name: str) -> bytes:
    if name == "ordinary":
        image = {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG}}
        text = {"output_type": "stream", "name": "stdout", "text": "chi2 = 1.02\n" * 20}
        return _notebook([
            cell for i in range(30) for cell in (
                _markdown(f"## Step {i}\n\nWe fit *the beam* with $E = mc^2$."),
                _code("import numpy as np\nx = np.linspace(0, 1, 100)\nplot(x, x**2)\n",
                      [text, image]),
            )
        ])  # fmt: skip
    if name == "million-cells":
        cell = '{"cell_type":"raw","metadata":{},"source":"row"}'
        return ('{"cells":[' + ",".join([cell] * 1_000_000) + '],"nbformat":4,'
                '"nbformat_minor":4,"metadata":{}}').encode()  # fmt: skip
    if name == "dense-code":
        return _notebook([_code("x = [1, 2, 3] * 4 + (5)\n" * 10_000) for _ in range(35)])
    if name == "markdown":
        return _notebook([_markdown("<b>a</b> *x* <i>y</i> `z`\n" * 10_000) for _ in range(30)])
    if name == "ansi":
        coloured = "\x1b[31mx\x1b[32my" * 20_000
        output = {"output_type": "stream", "name": "stdout", "text": coloured}
        return _notebook([_code("print()", [output]) for _ in range(40)])
    if name == "nested-markdown":
        nested = "".join("  " * i + "- *[a" for i in range(2_000)) + "\n"
        return _notebook([_markdown(nested * 8)])
    raise ValueError(name)


CASES = ("ordinary", "million-cells", "dense-code", "markdown", "ansi", "nested-markdown")


def _render(side: str, name: str, queue) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    from kioskhub.hub.gallery.render import render_notebook

    data = case(name)
    started = time.perf_counter()
    if side == "kioskhub":
        html = render_notebook(data).html
    else:
        exporter = HTMLExporter(template_name="lab", sanitize_html=True)
        html, _ = exporter.from_notebook_node(nbformat.reads(data.decode(), as_version=4))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"seconds": seconds, "peak_rss_mib": peak, "html_mib": len(html) / MIB,
               "input_mib": len(data) / MIB})  # fmt: skip


def measure(side: str, name: str, limit: float) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_render, args=(side, name, queue))
    process.start()
    process.join(limit)
    if process.is_alive():
        process.kill()
        process.join()
        return {"seconds": None, "note": f"stopped after {limit:.0f} s"}
    if process.exitcode:
        return {"seconds": None, "note": f"failed (exit code {process.exitcode})"}
    return queue.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sides", nargs="+", default=["kioskhub", "nbconvert"])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per render")
    args = parser.parse_args()
    cond = report.conditions(sides=args.sides, cases=args.cases, limit_s=args.limit)
    print(report.conditions_line(cond))
    results: dict[str, dict[str, dict]] = {}
    rows = []
    for name in args.cases:
        for side in args.sides:
            result = measure(side, name, args.limit)
            results.setdefault(name, {})[side] = result
            report.progress(f"{name} / {side}: {result}")
            rows.append([
                name, side, result.get("input_mib"), result.get("seconds"),
                result.get("peak_rss_mib"), result.get("html_mib"), result.get("note", ""),
            ])  # fmt: skip
    report.print_table(
        ["case", "side", "input MiB", "seconds", "peak RSS MiB", "page MiB", "note"],
        rows,
        title="Rendering notebooks",
    )
    report.write_json("gallery_render", {"conditions": cond, "results": results})
    plot(results, args.sides, args.limit, cond)


def plot(results: dict[str, dict[str, dict]], sides: list[str], limit: float, cond: dict) -> None:
    """Seconds per case and side; a render stopped at the limit is drawn at the limit, hatched."""
    figure, axes = report.new_figure(1, width=8, height=4)
    ax = axes[0]
    cases = list(results)
    width = 0.8 / len(sides)
    for n, side in enumerate(sides):
        seconds = [results[case][side].get("seconds") for case in cases]
        bars = ax.bar(
            [i + n * width for i in range(len(cases))],
            [s if s is not None else limit for s in seconds],
            width,
            label=side,
        )
        for bar, value in zip(bars, seconds, strict=True):
            if value is None:
                bar.set_hatch("//")
                bar.set_alpha(0.4)
    ax.set_xticks([i + width * (len(sides) - 1) / 2 for i in range(len(cases))], cases)
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    ax.set_yscale("log")
    ax.set_ylabel(f"seconds per render (hatched: stopped at {limit:.0f} s)")
    ax.set_title("Rendering notebooks: the gallery's bounded render against nbconvert alone")
    ax.legend()
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure("gallery_render", figure)


if __name__ == "__main__":
    main()
