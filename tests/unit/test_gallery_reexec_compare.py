"""The re-execution comparison: literal results for notebooks as published and re-executed."""

from __future__ import annotations

import base64
import io

import matplotlib
import numpy as np
import pytest
from PIL import Image

from kioskhub.hub.gallery.reexec_compare import (
    Tolerance,
    compare_reexecution,
    compare_text,
    tolerance_from,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def code(source, *outputs, cell_id=None, count=1):
    cell = {
        "cell_type": "code",
        "source": source,
        "execution_count": count,
        "metadata": {},
        "outputs": list(outputs),
    }
    if cell_id:
        cell["id"] = cell_id
    return cell


def markdown(source, cell_id=None):
    cell = {"cell_type": "markdown", "source": source, "metadata": {}}
    if cell_id:
        cell["id"] = cell_id
    return cell


def stream(text, name="stdout"):
    return {"output_type": "stream", "name": name, "text": text}


def result(data):
    return {"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": data}


def error(ename, evalue):
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}


def notebook(*cells, metadata=None):
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata or {}, "cells": list(cells)}


def plot_png(function, noise_seed=None):
    figure, axes = plt.subplots(figsize=(4, 3), dpi=80)
    x = np.linspace(0, 6.3, 200)
    axes.plot(x, function(x))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    png = buffer.getvalue()
    if noise_seed is not None:
        pixels = np.array(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
        noise = np.random.default_rng(noise_seed).integers(-3, 4, pixels.shape)
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels + noise, 0, 255).astype("uint8")).save(buffer, "PNG")
        png = buffer.getvalue()
    return base64.b64encode(png).decode()


def test_a_deterministic_notebook_is_reproduced():
    published = notebook(
        markdown("# Sums", cell_id="m"),
        code("print(sum(range(10)))", stream("45\n"), cell_id="a"),
        code("[1, 2]", result({"text/plain": "[1, 2]"}), cell_id="b", count=2),
    )
    again = notebook(
        markdown("# Sums", cell_id="m"),
        code("print(sum(range(10)))", stream("4"), stream("5\n"), cell_id="a", count=7),
        code("[1, 2]", result({"text/plain": "[1, 2]"}), cell_id="b", count=8),
    )
    assert compare_reexecution(published, again, Tolerance()) == {
        "badge": "reproduced",
        "cells": [
            {"index": 1, "cell": "a", "result": "same", "why": []},
            {"index": 2, "cell": "b", "result": "same", "why": []},
        ],
    }


def test_a_notebook_printing_the_time_differs():
    published = notebook(code("print(datetime.now())", stream("2026-12-01 06:02:14.118321\n")))
    again = notebook(code("print(datetime.now())", stream("2026-12-01 06:40:51.904113\n")))
    assert compare_reexecution(published, again, Tolerance()) == {
        "badge": "differs (cell 1)",
        "cells": [
            {
                "index": 0,
                "cell": "index:0",
                "result": "differs",
                "why": ["output 1 text: number 02 → 40"],
            },
        ],
    }


def test_a_float_within_tolerance_is_reproduced_and_an_integer_apart_differs():
    published = notebook(
        code("0.1 + 0.2", result({"text/plain": "0.30000000000000004"})),
        code("answer", result({"text/plain": "42"})),
    )
    again = notebook(
        code("0.1 + 0.2", result({"text/plain": "0.3"})),
        code("answer", result({"text/plain": "43"})),
    )
    report = compare_reexecution(published, again, Tolerance())
    assert report["badge"] == "differs (cell 2)"
    assert [cell["why"] for cell in report["cells"]] == [
        [],
        ["output 1 text/plain: number 42 → 43"],
    ]


def test_the_authors_tolerance_lets_numbers_move_further():
    published = notebook(
        code("fit()", stream("chi2 = 1.0213 after 12 steps\n")),
        metadata={"kioskhub": {"reproduce": {"tolerance": {"relative": 0.01}}}},
    )
    again = notebook(code("fit()", stream("chi2 = 1.0251 after 12 steps\n")))
    assert compare_reexecution(published, again, Tolerance())["badge"] == "differs (cell 1)"
    tolerance = tolerance_from(published["metadata"])
    assert tolerance == Tolerance(relative=0.01)
    assert compare_reexecution(published, again, tolerance)["badge"] == "reproduced"


def test_words_around_numbers_must_match_exactly():
    assert compare_text("loss 0.5\n", "Loss 0.5\n", Tolerance()) == "'loss 0.5\\n' → 'Loss 0.5\\n'"
    assert compare_text("1e-3 ok", "0.001 ok", Tolerance()) is None


def test_a_plot_with_pixel_noise_is_the_same_and_another_plot_differs():
    sine = plot_png(np.sin)
    published = notebook(
        code(
            "plot(sin)",
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"image/png": sine, "text/plain": "<Figure>"},
            },
        ),
    )
    noisy = notebook(
        code(
            "plot(sin)",
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"image/png": plot_png(np.sin, 1), "text/plain": "<Figure>"},
            },
        ),
    )
    other = notebook(
        code(
            "plot(sin)",
            {
                "output_type": "display_data",
                "metadata": {},
                "data": {"image/png": plot_png(np.cos), "text/plain": "<Figure>"},
            },
        ),
    )
    assert compare_reexecution(published, noisy, Tolerance())["badge"] == "reproduced"
    report = compare_reexecution(published, other, Tolerance())
    assert report["badge"] == "differs (cell 1)"
    assert report["cells"][0]["why"] == ["output 1 image differs (23 of 64 hash bits)"]


def test_a_cell_that_raises_now_fails_and_the_rest_are_not_run():
    published = notebook(
        code("x = 1 / n", cell_id="a"),
        code("print(x)", stream("0.5\n"), cell_id="b", count=2),
    )
    again = notebook(
        code("x = 1 / n", error("ZeroDivisionError", "division by zero"), cell_id="a"),
        code("print(x)", cell_id="b", count=None),
    )
    assert compare_reexecution(published, again, Tolerance()) == {
        "badge": "failed (cell 1: ZeroDivisionError: division by zero)",
        "cells": [
            {
                "index": 0,
                "cell": "a",
                "result": "failed",
                "why": ["ZeroDivisionError: division by zero"],
            },
            {"index": 1, "cell": "b", "result": "not run", "why": []},
        ],
    }


def test_an_error_raised_both_times_is_the_same():
    published = notebook(code("1/0", error("ZeroDivisionError", "division by zero")))
    assert compare_reexecution(published, published, Tolerance())["badge"] == "reproduced"


def test_a_missing_output_and_an_unreadable_image_are_reported():
    png = plot_png(np.sin)
    published = notebook(
        code("show()", stream("done\n"), result({"image/png": png})),
    )
    again = notebook(code("show()", stream("done\n")))
    assert compare_reexecution(published, again, Tolerance())["cells"][0]["why"] == [
        "outputs stream stdout, result → stream stdout"
    ]
    broken = notebook(code("show()", stream("done\n"), result({"image/png": "bm90IGEgcG5n"})))
    assert compare_reexecution(published, broken, Tolerance())["cells"][0]["why"] == [
        "output 2 image cannot be read: not a readable image"
    ]


@pytest.mark.parametrize(
    ("metadata", "requested", "message"),
    [
        (
            {"kioskhub": {"reproduce": {"tolerance": 0.1}}},
            None,
            "the notebook's metadata kioskhub.reproduce.tolerance must be an object such as "
            '{"relative": 1e-6}',
        ),
        ({}, {"relative": -1}, "'tolerance': 'relative' must be a number of 0 or more, not -1"),
        (
            {},
            {"relativ": 0.1},
            "'tolerance' has unknown fields ['relativ']; use "
            "['absolute', 'image_distance', 'relative']",
        ),
        (
            {},
            {"image_distance": 2.5},
            "'tolerance': 'image_distance' must be a whole number of 0 or more, not 2.5",
        ),
        (
            {},
            {"absolute": float("nan")},
            "'tolerance': 'absolute' must be a number of 0 or more, not nan",
        ),
    ],
)
def test_a_bad_tolerance_is_refused_naming_the_field(metadata, requested, message):
    with pytest.raises(ValueError) as raised:
        tolerance_from(metadata, requested)
    assert str(raised.value) == message


def test_the_request_overrides_the_notebooks_tolerance():
    metadata = {"kioskhub": {"reproduce": {"tolerance": {"relative": 0.5}}}}
    assert tolerance_from(metadata, {"absolute": 0.1}) == Tolerance(absolute=0.1)
    assert tolerance_from({}) == Tolerance()


def test_a_cell_stopped_by_the_time_limit_fails_saying_so():
    published = notebook(
        code("x = 1", cell_id="a"),
        code("sleep(3600)", cell_id="b", count=2),
        code("print(x)", stream("1\n"), cell_id="c", count=3),
    )
    again = notebook(
        code("x = 1", cell_id="a"),
        code("sleep(3600)", cell_id="b", count=None),
        code("print(x)", cell_id="c", count=None),
    )
    stopped = {"index": 1, "why": "the time limit of 600 s was reached"}
    report = compare_reexecution(published, again, Tolerance(), stopped)
    assert report["badge"] == "failed (cell 2: the time limit of 600 s was reached)"
    assert [cell["result"] for cell in report["cells"]] == ["same", "failed", "not run"]
