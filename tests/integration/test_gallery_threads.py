"""Review threads on a real hub: a reader opens a thread on a cell and comments, the author
answers through the page's form and resolves it, a reviewer link holder writes as "Reviewer
1", an anonymous link hides the author's name, a user who may not read the entry gets 404,
what is written is shown escaped, an expired link writes nothing, and a thread of v1 is
shown beside v2."""

from __future__ import annotations

import re
import time

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_gallery_service import HOSTILE, SERVICE, call, publication
from tests.support.hub_process import free_port, remove_site_folder, start_hub, write_site_config
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration
TOKEN = re.compile(r'name="_xsrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def site():
    folder = open_folder("gallery-threads")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        gallery={"enabled": True, "port": free_port(), "reviewer_link_max_days": 2},
        groups={"physics": ["ada", "bob"]},
    )
    hub = start_hub(config, folder / "hub.log")
    users = {name: signed_in(hub.url, name, SHARED_PASSWORD) for name in ("ada", "bob", "cy")}
    yield {"hub": hub, **users}
    if hub.process.poll() is None:
        hub.stop()
    remove_site_folder(folder)


def page_and_token(http: requests.Session, url: str) -> tuple[str, str]:
    page = http.get(url, timeout=30)
    assert page.status_code == 200, page.text[-2000:]
    return page.text, TOKEN.search(page.text).group(1)


def post_form(http: requests.Session, url: str, token: str | None, **fields):
    data = fields | ({"_xsrf": token} if token else {})
    return http.post(url, data=data, timeout=30, allow_redirects=False)


def without_tokens(html: str) -> str:
    return TOKEN.sub("", html)


def test_threads_on_cells(site):
    hub, ada, bob, cy = site["hub"], site["ada"], site["bob"], site["cy"]
    ada.spawn()
    body = publication("Fit", "a = 1", "print(a)", visibility="group:physics")
    published = call(ada, "POST", "/entries", json=body)
    assert published.status_code == 201, f"{published.text}\n{hub.log_text()[-3000:]}"
    entry = published.json()["id"]
    threads = f"/entries/{entry}/versions/1/threads"

    # bob, in the group, opens a thread on a cell; bad input is refused, saying why.
    for fields, message in [
        ({"cell_id": "zz", "text": "x"}, "version 1 has no cell 'zz'; use the id of one"),
        ({"cell_id": "c1", "text": "  "}, "the comment is empty; write something"),
        ({"cell_id": "c1", "text": "x" * 10001}, "has 10001 characters; at most 10000"),
    ]:
        refused = call(bob, "POST", threads, json=fields)
        assert refused.status_code == 400 and message in refused.json()["message"], refused.text
    opened = call(bob, "POST", threads, json={"cell_id": "c1", "text": HOSTILE})
    assert opened.status_code == 201, f"{opened.text}\n{hub.log_text()[-3000:]}"
    thread = opened.json()["id"]
    assert call(bob, "POST", f"{threads}/{thread}/comments", json={"text": "and a"}).ok

    # cy, outside the group, is told the entry does not exist.
    assert call(cy, "GET", threads).status_code == 404
    hidden = call(cy, "POST", threads, json={"cell_id": "c1", "text": "hi"})
    assert hidden.status_code == 404 and "c1" not in hidden.text
    assert call(cy, "POST", f"{threads}/{thread}/resolve").status_code == 404

    # ada answers and resolves on the page, with its forms and their XSRF token.
    page_url = f"{hub.url}{SERVICE}/entries/{entry}/v1"
    page, token = page_and_token(ada.http, page_url)
    assert HOSTILE not in page and "&lt;script&gt;alert" in page
    assert "<script" not in page
    action = f"{hub.url}{SERVICE}/api{threads}/{thread}"
    forged = post_form(ada.http, f"{action}/comments", None, text="forged")
    assert forged.status_code == 403, forged.text
    answered = post_form(ada.http, f"{action}/comments", token, text="because <b>a</b>")
    assert answered.status_code == 303, answered.text
    assert answered.headers["Location"] == f"{SERVICE}/entries/{entry}/v1#thread-{thread}"
    assert post_form(ada.http, f"{action}/resolve", token).status_code == 303
    listed = call(bob, "GET", threads).json()
    (shown,) = listed["threads"]
    assert (shown["cell_id"], shown["quote"], shown["state"]) == ("c1", "print(a)", "resolved")
    assert shown["resolved_by"] == "ada" and shown["opened_by"] == "bob"
    assert [(c["author"], c["text"]) for c in shown["comments"]] == [
        ("bob", HOSTILE), ("bob", "and a"), ("ada", "because <b>a</b>"),
    ]  # fmt: skip
    closed = call(bob, "POST", f"{threads}/{thread}/comments", json={"text": "more"})
    assert closed.status_code == 409 and "reopen it to comment" in closed.text
    page = ada.http.get(page_url, timeout=30).text
    assert "because &lt;b&gt;a&lt;/b&gt;" in page and "Resolved" in page

    # A reviewer link holder, without an account, writes as "Reviewer 1" through the form.
    link = call(ada, "POST", f"/entries/{entry}/links", json={"days": 1}).json()
    reviewer = requests.Session()
    link_page, link_token = page_and_token(reviewer, f"{hub.url}{link['url']}")
    assert "by ada" in link_page
    link_threads = f"{hub.url}{link['url']}/versions/1/threads"
    unprotected = post_form(reviewer, link_threads, None, cell_id="c0", text="hello")
    assert unprotected.status_code == 403
    wrote = post_form(reviewer, link_threads, link_token, cell_id="c0", text="why 1?")
    assert wrote.status_code == 303, wrote.text
    assert wrote.headers["Location"].startswith(f"{link['url']}/v1#thread-")
    by_link = reviewer.get(link_threads, timeout=30).json()["threads"]
    assert [t["opened_by"] for t in by_link] == ["bob", "Reviewer 1"]
    # Not the opener of bob's thread: the link may not reopen it.
    taken = reviewer.post(f"{link_threads}/{thread}/reopen", json={}, timeout=30)
    assert taken.status_code == 403 and "whoever opened this thread" in taken.text
    assert call(bob, "POST", f"{threads}/{thread}/reopen").status_code == 200

    # An anonymous link: the author's name appears nowhere, in the page or the API.
    anonymous = call(ada, "POST", f"/entries/{entry}/links", json={"days": 1, "anonymous": True})
    masked_url = f"{hub.url}{anonymous.json()['url']}"
    masked, masked_token = page_and_token(requests.Session(), masked_url)
    assert "<strong>Author</strong>" in masked and "Reviewer 1" in masked
    assert "ada" not in without_tokens(masked).lower()
    masked_api = requests.get(f"{masked_url}/versions/1/threads", timeout=30)
    assert "ada" not in masked_api.text.lower()
    assert masked_api.json()["threads"][0]["comments"][2]["author"] == "Author"
    second = requests.post(
        f"{masked_url}/versions/1/threads", json={"cell_id": "c0", "text": "me too"}, timeout=30
    )
    assert second.status_code == 201, second.text
    names = [t["opened_by"] for t in call(ada, "GET", threads).json()["threads"]]
    assert names == ["bob", "Reviewer 1", "Reviewer 2"]

    # An expired link writes nothing, by form or by API.
    brief = call(ada, "POST", f"/entries/{entry}/links", json={"expires": time.time() + 6})
    brief_url = f"{hub.url}{brief.json()['url']}"
    brief_session = requests.Session()
    _, brief_token = page_and_token(brief_session, brief_url)
    time.sleep(max(0.0, brief.json()["expires"] - time.time()) + 0.5)
    late = post_form(brief_session, f"{brief_url}/versions/1/threads", brief_token,
                     cell_id="c0", text="late")  # fmt: skip
    assert late.status_code == 410 and "has expired" in late.text
    late_api = requests.post(
        f"{brief_url}/versions/1/threads/{thread}/comments", json={"text": "late"}, timeout=30
    )
    assert late_api.status_code == 410
    assert len(call(ada, "GET", threads).json()["threads"]) == 3

    # Version 2 shows v1's threads beside it, read-only.
    again = call(ada, "POST", f"/entries/{entry}/versions", json=publication("Fit", "a = 2"))
    assert again.status_code == 201, again.text
    v2 = bob.http.get(f"{hub.url}{SERVICE}/entries/{entry}/v2", timeout=30).text
    earlier = v2.split('id="kh-gallery-earlier-threads"')[1]
    assert "On an earlier version (v1)" in earlier and f'id="thread-{thread}"' in earlier
    assert "<form" not in earlier and HOSTILE not in v2
    v2_threads = call(bob, "GET", f"/entries/{entry}/versions/2/threads").json()
    assert v2_threads["threads"] == [] and len(v2_threads["earlier"]) == 3
    on_v2 = call(bob, "POST", f"/entries/{entry}/versions/2/threads/{thread}/comments",
                 json={"text": "x"})  # fmt: skip
    assert on_v2.status_code == 404

    # Users' errors are one line each in the log, and no link's secret is logged.
    log = hub.log_text()
    assert "Error in exception logger" not in log
    assert "version 1 has no cell 'zz'" in log
    for url in (link["url"], anonymous.json()["url"], brief.json()["url"]):
        assert url.rsplit("/", 1)[1] not in log
