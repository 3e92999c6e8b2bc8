"""Rendered notebooks on a real hub: the entry page frames the render in ``<iframe sandbox>``;
the render answers readers (and reviewer-link holders without an account) with the cells
and outputs, no script and a policy that allows none; others get 404, revoked links 410."""

from __future__ import annotations

import re

import pytest

from kioskhub.hub.gallery.render import RENDER_HEADERS
from tests.integration.test_gallery_service import SERVICE, anonymous_get, call, publication
from tests.integration.test_gallery_service import site as site  # the same hub, a fresh one

pytestmark = pytest.mark.integration

SVG = '<svg xmlns="http://www.w3.org/2000/svg" onload="alert(2)"><script>alert(3)</script></svg>'


def hostile_publication() -> dict:
    body = publication("Rendered <i>fit</i>", "print(6 * 7)")
    cells = body["notebook"]["cells"]
    cells[0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "42\n"}]
    cells.append(
        {"cell_type": "markdown", "id": "m1", "metadata": {},
         "source": "# Method\n<script>alert(1)</script>"}
    )  # fmt: skip
    cells.append(
        {"cell_type": "code", "id": "c2", "metadata": {}, "source": "show()",
         "execution_count": 2,
         "outputs": [{"output_type": "display_data", "metadata": {},
                      "data": {"image/svg+xml": SVG, "text/plain": "<Figure>"}}]}
    )  # fmt: skip
    return body


def test_a_version_is_rendered_into_a_sandboxed_frame_with_nothing_run(site):
    hub, ada, bob = site["hub"], site["ada"], site["bob"]
    ada.spawn()
    reply = call(ada, "POST", "/entries", json=hostile_publication())
    assert reply.status_code == 201, f"{reply.text}\n{hub.log_text()[-3000:]}"
    entry_id = reply.json()["id"]

    page = ada.http.get(f"{hub.url}{SERVICE}/entries/{entry_id}", timeout=60)
    assert page.status_code == 200, page.text[-2000:]
    frame = re.search(r'<iframe id="kh-gallery-render" sandbox [^>]*src="([^"]+)"', page.text)
    assert frame, page.text[-3000:]
    assert frame.group(1) == f"{SERVICE}/render/{entry_id}/v1"

    render = ada.http.get(f"{hub.url}{frame.group(1)}", timeout=60)

    assert render.status_code == 200, render.text[-2000:]
    for name, value in RENDER_HEADERS.items():
        assert render.headers[name] == value
    assert "script" not in render.headers["Content-Security-Policy"].replace("'none'", "")
    html = render.text
    assert 'id="cell-0" data-cell-id="c0"' in html and 'id="cell-2" data-cell-id="c2"' in html
    assert "42" in html and "Method" in html
    assert "<script" not in html.lower()
    assert "onload" not in html.lower().replace("data:image/svg+xml;base64", "")

    # A user who may not read the draft sees nothing of it.
    assert bob.http.get(f"{hub.url}{frame.group(1)}", timeout=60).status_code == 404
    assert call(ada, "PUT", f"/entries/{entry_id}/visibility", json={"visibility": "site"}).ok
    assert bob.http.get(f"{hub.url}{frame.group(1)}", timeout=60).status_code == 200

    # A reviewer link's holder, without an account, gets the same render until it is revoked.
    link = call(ada, "POST", f"/entries/{entry_id}/links", json={"days": 1, "anonymous": True})
    assert link.status_code == 201, link.text
    secret = link.json()["url"].rstrip("/").rsplit("/", 1)[-1]
    review_page = anonymous_get(site, f"{SERVICE}/review/{secret}")
    assert f'src="{SERVICE}/review/{secret}/render/v1"' in review_page.text
    reviewed = anonymous_get(site, f"{SERVICE}/review/{secret}/render/v1")
    assert reviewed.status_code == 200 and reviewed.text == html
    assert call(ada, "DELETE", f"/entries/{entry_id}/links/{link.json()['id']}").status_code == 204
    assert anonymous_get(site, f"{SERVICE}/review/{secret}/render/v1").status_code == 410
    assert anonymous_get(site, f"{SERVICE}/render/{entry_id}/v9").status_code in (302, 403)
    assert call(ada, "GET", f"/entries/{entry_id}/versions/9").status_code == 404
