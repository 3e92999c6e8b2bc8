"""Rendering published notebooks: hostile notebooks render with nothing that could run, within
bounds, and every cell carries the anchor review threads attach to (real nbconvert)."""

from __future__ import annotations

import base64
import json
import time
import tracemalloc
from html.parser import HTMLParser

import pytest

from kioskhub.hub.gallery.render import (
    RENDER_HEADERS,
    NotebookUnreadable,
    RenderLimits,
    render_notebook,
)

# A 1x1 PNG.
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg=="
)
DANGEROUS_TAGS = {"script", "iframe", "object", "embed", "form", "svg", "math", "base", "meta"}


class Elements(HTMLParser):
    """Every element and attribute of a page, and its visible text, as a browser parses it."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data):
        self.text.append(data)

    def visible_text(self) -> str:
        return "".join(self.text)


def notebook(*cells: dict, **top) -> bytes:
    return json.dumps(
        {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells), **top}
    ).encode()


def markdown(source: str, cell_id: str = "m") -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": source}


def code(source: str, *outputs: dict, cell_id: str = "c") -> dict:
    return {"cell_type": "code", "id": cell_id, "metadata": {}, "execution_count": 1,
            "source": source, "outputs": list(outputs)}  # fmt: skip


def display(data: dict, metadata: dict | None = None) -> dict:
    return {"output_type": "display_data", "data": data, "metadata": metadata or {}}


def stream(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def assert_nothing_runs(html: str) -> Elements:
    """No element or attribute in the page's body (the head is the gallery's own) can run."""
    assert not [tag for tag, _ in Elements(html).tags if tag == "script"]
    page = Elements(html[html.index("<main>") :])
    for tag, attrs in page.tags:
        assert tag not in DANGEROUS_TAGS, (tag, attrs)
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            assert "javascript:" not in value.lower(), (tag, name, value)
            if name in ("src", "href"):
                assert value.startswith(("data:image/", "http", "mailto:", "#")), (tag, value)
    return page


def test_a_normal_notebook_shows_its_code_markdown_text_and_images_with_cell_anchors():
    rendered = render_notebook(notebook(
        markdown("# Beam *energy*\n\nWe fit $E = mc^2$ and $a<b$.", cell_id="intro"),
        code("energy = 3 * 4\nprint(energy)", stream("12\n"),
             {"output_type": "execute_result", "execution_count": 1, "metadata": {},
              "data": {"text/plain": "Fit(chi2=1.02)"}},
             display({"image/png": PNG, "text/plain": "<Figure>"}), cell_id="fit"),
    ))  # fmt: skip
    page = assert_nothing_runs(rendered.html)
    text = page.visible_text()
    assert "Beam" in text and "energy" in text
    assert "$E = mc^2$" in text and "$a<b$" in text, "math is kept as text"
    assert "energy = 3 * 4" in " ".join(text.split())
    assert "12" in text and "Fit(chi2=1.02)" in text
    assert ("img", {"src": f"data:image/png;base64,{PNG}"}) in [
        (tag, {"src": attrs.get("src")}) for tag, attrs in page.tags
    ]
    anchors = [attrs for _, attrs in page.tags if attrs.get("id", "").startswith("cell-")]
    assert [(a["id"], a["data-cell-id"]) for a in anchors] == [
        ("cell-0", "intro"),
        ("cell-1", "fit"),
    ]
    assert [(c.index, c.cell_id, c.cell_type, c.first_line) for c in rendered.cells] == [
        (0, "intro", "markdown", "# Beam *energy*"),
        (1, "fit", "code", "energy = 3 * 4"),
    ]
    assert len(rendered.cells[1].source_sha256) == 64
    assert (rendered.total_cells, rendered.cells_not_shown, rendered.truncated) == (2, 0, False)


def test_script_in_markdown_is_shown_as_text_and_never_as_an_element():
    rendered = render_notebook(notebook(markdown(
        "Hello <script>alert('md')</script> <img src=x onerror=\"alert('img')\">\n\n"
        "[click](javascript:alert('link')) <a href=\"javascript:alert('a')\">a</a> "
        "<iframe src=\"https://evil.example\"></iframe> <form action=x><input></form> "
        "<object data=x></object><embed src=x> <svg onload=alert(1)></svg> "
        "<a href=\"https://ok.example/\" onclick=\"alert(1)\">ok</a>"
    )))  # fmt: skip
    page = assert_nothing_runs(rendered.html)
    assert "<script>alert('md')</script>" in page.visible_text(), "shown, escaped"
    assert ("a", {"href": "https://ok.example/"}) in page.tags


def test_script_event_handlers_and_frames_in_an_html_output_do_not_survive():
    rendered = render_notebook(notebook(code("show()", display({"text/html": (
        "<div onmouseover=\"alert(1)\"><b>table</b><script>alert(2)</script>"
        "<img src=\"data:image/png;base64,AAAA\" onerror=\"alert(3)\">"
        "<img src=\"javascript:alert(4)\"><a href=\" JAVASCRIPT:alert(5)\">x</a>"
        "<iframe srcdoc=\"<script>alert(6)</script>\"></iframe>"
        "<style>body{background:url(https://evil.example)}</style><base href=\"//evil\">"
        "<table class=\"dataframe\"><tr><td colspan=\"2\">1.5</td></tr></table></div>"
    ), "text/plain": "plain"}))))  # fmt: skip
    page = assert_nothing_runs(rendered.html)
    assert ("b", {}) in page.tags and "table" in page.visible_text()
    assert ("td", {"colspan": "2"}) in page.tags
    assert "<script>alert(2)</script>" in page.visible_text()
    assert ("img", {"src": "data:image/png;base64,AAAA"}) in page.tags
    assert not [attrs for tag, attrs in page.tags if tag == "style" and attrs]


def test_an_svg_output_with_script_is_shown_only_as_an_image():
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
        "<script>alert(2)</script><circle r='4'/></svg>"
    )
    page = assert_nothing_runs(render_notebook(notebook(code("plot()", display({
        "image/svg+xml": svg, "text/plain": "<svg>"})))).html)  # fmt: skip
    (src,) = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert src.startswith("data:image/svg+xml;base64,"), "an <img> never runs SVG script"
    assert base64.b64decode(src.split(",", 1)[1]).decode() == svg


def test_javascript_widget_and_mermaid_outputs_are_named_and_not_shown():
    rendered = render_notebook(notebook(code("x", *[
        display({mime: "<script>alert(1)</script>"}) for mime in (
            "application/javascript", "application/vnd.jupyter.widget-view+json",
            "text/vnd.mermaid")]), raw_cell()))  # fmt: skip
    page = assert_nothing_runs(rendered.html)
    text = page.visible_text()
    assert "[output not shown: application/javascript]" in text
    assert "[output not shown: text/vnd.mermaid]" in text
    assert "<b>raw</b>" in text, "raw cells are shown as text"


def raw_cell() -> dict:
    return {"cell_type": "raw", "metadata": {"raw_mimetype": "text/html"}, "source": "<b>raw</b>"}


def test_a_cell_id_with_quotes_and_markup_stays_inside_its_attribute():
    hostile = 'x" onmouseover="alert(1)"><script>alert(2)</script><p id=\''
    page = assert_nothing_runs(render_notebook(notebook(markdown("hi", cell_id=hostile))).html)
    (anchor,) = [attrs for _, attrs in page.tags if attrs.get("id") == "cell-0"]
    assert anchor["data-cell-id"] == hostile
    assert "alert" not in page.visible_text()


def test_images_that_are_not_base64_do_not_break_out_of_their_attribute():
    page = assert_nothing_runs(render_notebook(notebook(code("x", display({
        "image/png": "\"><script>alert(1)</script>"}, {"image/png": {"width": "1 onload=x"}}),
    ))).html)  # fmt: skip
    assert "[image/png image not shown: it is not valid base64]" in page.visible_text()
    assert not [tag for tag, _ in page.tags if tag == "img"]


def test_a_huge_text_output_is_cut_and_says_how_much_is_not_shown():
    rendered = render_notebook(notebook(code("print('x' * 10**7)", stream("x" * 10_000_000))))
    assert "[9,737,856 more characters not shown]" in Elements(rendered.html).visible_text()
    assert len(rendered.html) < 2_000_000


def test_dense_code_past_the_markup_budget_is_shown_as_plain_text_in_bounded_time():
    source = "x = [1, 2, 3] * 4 + (5)\n" * 10_000
    started = time.monotonic()
    rendered = render_notebook(notebook(*[code(source, cell_id=f"c{i}") for i in range(15)]))
    assert time.monotonic() - started < 60, "every cell highlighted: minutes"
    page = Elements(rendered.html)
    assert sum(1 for _, attrs in page.tags if attrs.get("id", "").startswith("cell-")) == 15
    assert len(rendered.html) < 30_000_000


def test_a_million_cells_render_the_first_ones_in_bounded_time_and_memory():
    cell = '{"cell_type":"raw","metadata":{},"source":"row"}'
    data = ('{"cells":[' + ",".join([cell] * 1_000_000) + '],"nbformat":4,'
            '"nbformat_minor":4,"metadata":{}}').encode()  # fmt: skip
    started = time.monotonic()
    rendered = render_notebook(data)
    assert time.monotonic() - started < 60, "rendering every cell takes many minutes"
    assert (len(rendered.cells), rendered.total_cells) == (2_000, 1_000_000)
    assert "998,000 more cells not shown: a render shows the first 2,000 cells." in (
        Elements(rendered.html).visible_text()
    )
    tracemalloc.start()
    try:
        render_notebook(data, limits=RenderLimits(max_cells=10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(data), f"peak {peak:,} bytes: all cells were kept in memory"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"cells": [', "not a notebook: invalid JSON at line 1, column 12"),
        (b"\xff\xfe", "not a notebook: not UTF-8 text (byte 0)"),
        (b"[1, 2]", "not a notebook: invalid JSON at line 1, column 1: the notebook must be"),
        (b'{"cells": []}', "not a notebook: it has no 'nbformat' field"),
        (b'{"nbformat": 3, "worksheets": []}', "nbformat 3 notebooks are not rendered"),
        (
            b'{"nbformat": 4, "cells": {}}',
            "not a notebook: its 'cells' field is missing or not a list",
        ),
        (
            b'{"nbformat": 4, "cells": []} []',
            "not a notebook: invalid JSON at line 1, column 30: extra data after",
        ),
        (b'{"nbformat": 4, "cells": [' + b"[" * 100_000 + b"]", "not a notebook"),
    ],
)
def test_a_file_that_is_not_an_nbformat_4_notebook_gets_a_clear_error(data, message):
    with pytest.raises(
        NotebookUnreadable, match="^" + message.replace("(", r"\(").replace(")", r"\)")
    ):
        render_notebook(data)


def test_a_notebook_over_the_size_limit_is_refused_before_it_is_parsed():
    with pytest.raises(NotebookUnreadable, match=r"the notebook is 2\.0 MiB; the gallery renders"):
        render_notebook(b" " * 2 * 2**20, limits=RenderLimits(max_notebook_bytes=2**20))


def test_malformed_cells_are_named_and_the_rest_renders():
    rendered = render_notebook(notebook("not a cell", {"cell_type": "nonsense"}, code("ok = 1")))
    text = Elements(rendered.html).visible_text()
    assert "[cell 0 could not be read: not a known type]" in text
    assert "ok = 1" in " ".join(text.split())
    assert [c.cell_type for c in rendered.cells] == ["unreadable", "unreadable", "code"]


def test_a_render_is_served_with_a_policy_that_allows_no_script():
    policy = RENDER_HEADERS["Content-Security-Policy"]
    directives = dict(d.strip().partition(" ")[::2] for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "data:"
    assert "sandbox" in directives and "script-src" not in directives
    assert RENDER_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert RENDER_HEADERS["Referrer-Policy"] == "no-referrer"
    assert not [tag for tag, _ in Elements(render_notebook(notebook()).html).tags
                if tag == "script"]  # fmt: skip


def test_past_the_markup_budget_markdown_is_text_and_colours_are_dropped():
    limits = RenderLimits(max_markup_chars=40)
    rendered = render_notebook(notebook(
        markdown("*first* cell, rendered"),
        markdown("*second* <b>cell</b>, past the budget"),
        code("print()", stream("\x1b[31mred\x1b[0m text")),
    ), limits=limits)  # fmt: skip
    page = assert_nothing_runs(rendered.html)
    assert ("em", {}) in page.tags and "first" in page.visible_text()
    assert "*second* <b>cell</b>, past the budget" in page.visible_text(), "shown as text"
    assert "red text" in page.visible_text()
    assert not [attrs for _, attrs in page.tags if "ansi-red" in attrs.get("class", "")]
    assert [c.cell_type for c in rendered.cells] == ["markdown", "markdown", "code"]


def test_a_notebook_given_as_parsed_json_renders_the_same():
    data = notebook(markdown("# Title", cell_id="t"), code("1 + 1", cell_id="c"))
    assert render_notebook(json.loads(data)).html == render_notebook(data).html
