"""Rendering a published notebook to HTML that is safe to show, within bounded time and size.

Published notebooks are untrusted: a markdown cell, an HTML or SVG output, a cell id or a
metadata field may carry script. A render is made safe in three layers:

1. **Bounding** (``render_bounds``): the notebook is rebuilt from its checked fields only,
   with at most ``max_cells`` cells, each source and output cut past a size, a total budget,
   and only allow-listed output types (no JavaScript, widgets, mermaid); metadata is dropped.
2. **Sanitising**: nbconvert's ``lab`` template (nothing is executed) with its script blocks
   removed; markdown, HTML and markdown outputs pass an allow-list sanitiser (bleach): no
   ``<script>``, no event handler attributes, no ``<iframe>/<object>/<embed>/<form>``, links
   only to http(s) and mailto, images only as ``data:`` URIs of raster or SVG images. SVG
   outputs become ``<img src="data:image/svg+xml;base64,...">``, in which browsers never run
   script. Text, errors and code are escaped.
3. **Isolation**: the gallery serves a render from its own URL with ``RENDER_HEADERS`` (a
   Content-Security-Policy that allows no script at all and sandboxes the document), and its
   page frames that URL in ``<iframe sandbox>`` without ``allow-scripts`` or
   ``allow-same-origin``. So even a sanitiser bug runs nothing on the hub's origin.

Each cell is wrapped in an element with ``id="cell-<index>"`` and ``data-cell-id`` (the
cell's nbformat id, escaped), the anchors of review threads. Rendering takes up to a few
seconds for the largest notebooks: call it off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

from dataclasses import dataclass

import bleach
import pygments
from jinja2 import DictLoader
from nbconvert import HTMLExporter, TemplateExporter
from nbformat import from_dict
from pygments.formatters import HtmlFormatter
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from .render_bounds import (
    CellSummary,
    NotebookUnreadable,
    RenderLimits,
    read_notebook,
)

__all__ = [
    "DEFAULT_LIMITS",
    "RENDER_HEADERS",
    "CellSummary",
    "NotebookUnreadable",
    "RenderLimits",
    "RenderedNotebook",
    "render_notebook",
    "sanitise_html",
]

RENDER_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "private, no-cache",
}

_TAGS = frozenset(
    "a abbr b blockquote br caption cite code col colgroup dd del details div dl dt em "
    "figcaption figure h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre q s samp small "
    "span strong sub summary sup table tbody td tfoot th thead tr u ul var".split()
)
_RASTER_OR_SVG_DATA = ("data:image/png;", "data:image/jpeg;", "data:image/gif;",
                       "data:image/webp;", "data:image/svg+xml;")  # fmt: skip
_URL_SCHEMES = ("http://", "https://", "mailto:", "#")


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    if name in ("class", "title", "align"):
        return True
    if tag == "a":
        return name == "href" and value.strip().lower().startswith(_URL_SCHEMES)
    if tag == "img":
        if name == "src":
            return value.strip().lower().startswith(_RASTER_OR_SVG_DATA)
        return name in ("alt", "width", "height")
    if tag in ("td", "th"):
        return name in ("colspan", "rowspan")
    return tag == "ol" and name == "start"


_CLEANER = bleach.Cleaner(
    tags=_TAGS,
    attributes=_allowed_attribute,
    protocols={"http", "https", "mailto", "data"},
    strip=False,
    strip_comments=True,
)


def sanitise_html(fragment: str | bytes) -> str:
    """Untrusted HTML to HTML with only the allow-listed tags and attributes; the rest is
    shown as escaped text."""
    text = fragment.decode("utf-8", "replace") if isinstance(fragment, bytes) else str(fragment)
    return _CLEANER.clean(text)


# The lab template without its script blocks, with raw cells shown as text and every cell
# anchored; the notebook's own scripts never reach these blocks (render_bounds drops them).
_TEMPLATES = {
    "kioskhub_render.html.j2": """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block footer_js %}{% endblock footer_js %}
{% block data_javascript scoped %}{% endblock data_javascript %}
{% block data_widget_view scoped %}{% endblock data_widget_view %}
{% block data_mermaid scoped %}{% endblock data_mermaid %}
{% block input %}
<div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
<div class="cm-editor cm-s-jupyter">
{%- if cell.metadata.kioskhub.plain %}
<div class="highlight"><pre>{{ cell.source | escape_html }}</pre></div>
{%- else %}
{{ cell.source | highlight_code(metadata=cell.metadata) }}
{%- endif %}
</div>
</div>
{%- endblock input %}
{% block rawcell scoped %}
<div {{ cell_id_anchor(cell) }} class="jp-Cell jp-RawCell jp-Notebook-cell">
<pre>{{ cell.source | escape_html }}</pre>
</div>
{% endblock rawcell %}
{% block body_footer %}
{%- if resources.kioskhub_not_shown %}
<p class="kioskhub-not-shown">{{ resources.kioskhub_not_shown | escape_html }}</p>
{%- endif %}
{{ super() }}
{% endblock body_footer %}
""",
    "cell_id_anchor.j2": """{%- macro cell_id_anchor(cell) -%}
id="cell-{{ cell.metadata.kioskhub.index }}" data-cell-id="
{{- cell.metadata.kioskhub.cell_id | escape_html }}"
{%- endmacro %}
""",
}


class _Highlighter:
    """Pygments with one lexer and formatter per render (nbconvert makes a formatter per
    cell, which dominates the time of a render of many small cells)."""

    def __init__(self, language: str):
        try:
            self.lexer = get_lexer_by_name(language)
        except ClassNotFound:
            self.lexer = TextLexer()
        self.formatter = HtmlFormatter(cssclass=f"highlight hl-{language}")

    def __call__(self, source: str, metadata: dict | None = None) -> str:
        return pygments.highlight(source, self.lexer, self.formatter)


class _GalleryExporter(HTMLExporter):
    """nbconvert's HTML exporter without its final re-parse of the whole page (alt texts,
    tab indices), which costs more than the render itself on large notebooks."""

    def from_notebook_node(self, nb, resources=None, **kw):
        self.register_filter("highlight_code", _Highlighter(nb.metadata.language_info.name))
        return TemplateExporter.from_notebook_node(self, nb, resources, **kw)


@dataclass(frozen=True)
class RenderedNotebook:
    """A safe HTML page of a notebook, to be served with ``RENDER_HEADERS``.

    ``cells`` lists the cells shown, in order; ``cells_not_shown`` counts those past the
    limits (their number is also stated at the end of the page).
    """

    html: str
    cells: tuple[CellSummary, ...]
    total_cells: int
    cells_not_shown: int
    truncated: bool


DEFAULT_LIMITS = RenderLimits()


def render_notebook(
    notebook: bytes | dict, *, limits: RenderLimits = DEFAULT_LIMITS
) -> RenderedNotebook:
    """Render a notebook file (its bytes, or its parsed JSON) to safe, bounded HTML.

    Raises ``NotebookUnreadable`` (its message says what is wrong) when it is not valid JSON,
    not nbformat 4, or larger than ``limits.max_notebook_bytes``.
    """
    bounded = read_notebook(notebook, limits)
    not_shown = ""
    if bounded.cells_not_shown:
        why = (
            "the render reached its size budget"
            if bounded.budget_reached
            else (f"a render shows the first {limits.max_cells:,} cells")
        )
        not_shown = f"{bounded.cells_not_shown:,} more cells not shown: {why}."
    exporter = _GalleryExporter(
        template_name="lab",
        template_file="kioskhub_render.html.j2",
        extra_loaders=[DictLoader(_TEMPLATES)],
        sanitize_html=True,
        exclude_anchor_links=True,
        optimistic_validation=True,
        filters={"clean_html": sanitise_html},
    )
    html, _ = exporter.from_notebook_node(
        from_dict(bounded.notebook),
        resources={"metadata": {"name": "Notebook"}, "kioskhub_not_shown": not_shown},
    )
    # A notebook may hold lone surrogates ("\\ud800" in its JSON): they cannot be served.
    html = html.encode("utf-8", "replace").decode("utf-8")
    return RenderedNotebook(
        html=html,
        cells=tuple(bounded.cells),
        total_cells=bounded.total_cells,
        cells_not_shown=bounded.cells_not_shown,
        truncated=bool(bounded.cells_not_shown or bounded.budget_reached),
    )
