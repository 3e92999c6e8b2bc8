"""The review loop of the gallery in real browsers, two people each in their own Chromium.

The author publishes a notebook with a file beside it for the whole site (through the REST
API, as a script would: publishing from JupyterLab has its own browser test). The reviewer
finds it by its title on the list page, reads the rendered notebook in its frame and opens a
thread on a cell with the page's form; the author answers and resolves it on their page and
presses "Re-execute this version"; the reviewer sees the answer, presses "Open in my server"
and lands in JupyterLab with the version's notebook, its file beside it, in the environment
the page shows as pinned; the author's page, refreshing itself, ends with "reproduced"."""

from __future__ import annotations

import base64

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.browser.test_lab_in_browser import fail_on_spawn_error, sign_in
from tests.conftest import SHARED_PASSWORD
from tests.support.browser import Browser
from tests.support.gallery_hub import gallery_hub
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.browser

AUTHOR = "chromium-auth"
REVIEWER = "chromium-rev"
"""Names of their own: servers' cgroups are named after their user, on the whole machine."""
SERVICE = "/services/gallery"
TITLE = "Beamline rows, reviewed"
QUESTION = "Why three rows and not two?"
ANSWER = "The header counts as a row."
POINTS = b"x,y\n1,2\n3,4\n"
REPRODUCE_WAIT = 300
"""Seconds for the gallery to start a server of its own, run the notebook and compare."""


def code(n: int, source: str, output: dict) -> dict:
    return {"cell_type": "code", "id": f"c{n}", "source": source, "metadata": {},
            "execution_count": n + 1, "outputs": [output]}  # fmt: skip


NOTEBOOK = {
    "cells": [
        code(0, "rows = open('points.csv').read().splitlines()\nprint('rows:', len(rows))",
             {"output_type": "stream", "name": "stdout", "text": "rows: 3\n"}),
        code(1, "sum(range(10))", {"output_type": "execute_result", "execution_count": 2,
                                   "metadata": {}, "data": {"text/plain": "45"}}),
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip


@pytest.fixture(scope="module")
def hub():
    with gallery_hub("gallery-review-browser") as (hub, _folder):
        yield hub


def publish(author: UserSession, title: str, notebook: dict, files: dict[str, bytes]) -> int:
    body = {
        "title": title,
        "abstract": "Counts the rows of a table.",
        "tags": ["beam"],
        "notebook": notebook,
        "files": {name: base64.b64encode(content).decode() for name, content in files.items()},
        "visibility": "site",
    }
    reply = author.http.post(
        f"{author.hub_url}{SERVICE}/api/entries",
        json=body,
        headers={"Authorization": f"token {author.token}"},
        timeout=60,
    )
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def sign_in_to(browser: Browser, hub_url: str, name: str) -> None:
    """Sign in on the hub's form and wait until the hub has let the browser in."""
    sign_in(browser, hub_url, name, SHARED_PASSWORD)
    browser.wait_for_url(lambda url: "/hub/login" not in url, 60, f"signed in as {name}")


def text_of(browser: Browser, selector: str) -> str:
    return browser.wait_for(selector, 60).text


def thread_with(browser: Browser, text: str, timeout: float = 60):
    """The review thread on the page that shows ``text``."""
    return browser.wait_for_text("#kh-gallery-threads article.thread", text, timeout)


def state_of(thread) -> str:
    return thread.find_element(By.CSS_SELECTOR, ".state").text


def field_in(element, selector: str, what: str):
    """The form field ``selector`` inside ``element``; fail saying ``what`` is missing."""
    fields = element.find_elements(By.CSS_SELECTOR, selector)
    assert fields, f"no {what} in:\n{element.text}"
    return fields[0]


def click_in(element, label: str) -> None:
    """Press the button labelled ``label`` inside ``element``."""
    for button in element.find_elements(By.CSS_SELECTOR, "button"):
        if button.text.strip() == label:
            button.click()
            return
    raise AssertionError(f"no button {label!r} in:\n{element.text}")


def test_review_comment_open_in_lab_and_reproduce(hub, browser, author_browser):
    author = signed_in(hub.url, AUTHOR, SHARED_PASSWORD)
    as_reviewer = signed_in(hub.url, REVIEWER, SHARED_PASSWORD)  # for the contents API
    assert author.spawn()[-1].get("ready"), hub.log_text()[-3000:]  # publishing needs it
    entry = publish(author, TITLE, NOTEBOOK, {"points.csv": POINTS})
    publish(author, "Another notebook", NOTEBOOK, {"points.csv": POINTS})
    page_path = f"{SERVICE}/entries/{entry}/v1"

    # The reviewer finds the entry on the list page by its title and opens it.
    reviewer = browser
    sign_in_to(reviewer, hub.url, REVIEWER)
    reviewer.get(f"{hub.url}{SERVICE}/")
    reviewer.wait_for_text("#kh-gallery-total", "2 entries", 60)
    search = reviewer.wait_for("form.search input[name=q]", 30)
    search.send_keys("reviewed")
    reviewer.click_text("form.search button", "Search", 30)
    reviewer.wait_for_text("#kh-gallery-total", "1 entry", 60)
    rows = [row.text for row in reviewer.css("#kh-gallery-entries tbody tr")]
    assert len(rows) == 1 and rows[0].startswith(f"{TITLE} {AUTHOR}"), rows
    reviewer.click_text("#kh-gallery-entries a", TITLE, 30)
    reviewer.wait_for_url(lambda url: url.endswith(f"{SERVICE}/entries/{entry}"), 60, "the entry")
    assert text_of(reviewer, "#kh-gallery-title") == TITLE
    assert text_of(reviewer, "#kh-gallery-author").startswith(f"by {AUTHOR}")
    assert "This version has not been re-executed." in text_of(reviewer, "#kh-gallery-reexecution")
    assert not reviewer.css("#kh-gallery-reexecute"), "a reader is offered to re-execute"

    # The rendered notebook, in its sandboxed frame: the cells' sources and outputs.
    reviewer.driver.switch_to.frame(reviewer.wait_for("#kh-gallery-render", 60))
    try:
        first = reviewer.wait_for_text("#cell-0", "rows: 3", 60).text
        assert "print('rows:', len(rows))" in first, first
        assert "45" in reviewer.wait_for("#cell-1", 30).text
    finally:
        reviewer.driver.switch_to.default_content()

    # The reviewer opens a thread on the first cell with the page's form.
    form = reviewer.wait_for("#kh-gallery-new-thread", 60)
    cells = Select(field_in(form, "select[name=cell_id]", "cell to choose"))
    labels = [option.text for option in cells.options]
    assert labels[0].startswith("1. c0 (code): rows = open('points.csv')"), labels
    cells.select_by_visible_text(labels[0])
    field_in(form, "textarea[name=text]", "comment box").send_keys(QUESTION)
    click_in(form, "Open thread")
    reviewer.wait_for_url(lambda url: f"{page_path}#thread-" in url, 60, "the thread's anchor")
    opened = thread_with(reviewer, QUESTION)
    assert "Cell c0" in opened.text and state_of(opened) == "Open", opened.text
    assert REVIEWER in opened.text, opened.text

    # The author, in their own browser, answers it, resolves it and asks for a re-execution.
    sign_in_to(author_browser, hub.url, AUTHOR)
    author_browser.get(f"{hub.url}{page_path}")
    thread = thread_with(author_browser, QUESTION)
    assert f"{REVIEWER}" in thread.text and "Cell c0" in thread.text, thread.text
    field_in(thread, "textarea[name=text]", "answer box").send_keys(ANSWER)
    click_in(thread, "Comment")
    thread = thread_with(author_browser, ANSWER)
    click_in(thread, "Resolve")
    author_browser.wait_until(
        lambda _: state_of(thread_with(author_browser, ANSWER)) == "Resolved",
        60,
        "the author's page never showed the thread as Resolved",
    )
    click_in(author_browser.wait_for("#kh-gallery-reexecute", 60), "Re-execute this version")
    author_browser.wait_until(
        lambda _: any(
            f"Re-execution {state} since" in author_browser.page_text()
            for state in ("queued", "running")
        ),
        60,
        "the page never said the re-execution was queued or running",
    )
    assert not author_browser.css("#kh-gallery-reexecute"), "offered again while queued"

    # The reviewer reloads and sees the answer, by the author, and the thread resolved.
    reviewer.get(f"{hub.url}{page_path}")
    seen = thread_with(reviewer, ANSWER)
    assert QUESTION in seen.text and f"by {AUTHOR}" in seen.text, seen.text
    assert state_of(seen) == "Resolved"
    answer = reviewer.wait_for_text("#kh-gallery-threads li", ANSWER, 30)
    assert answer.find_element(By.CSS_SELECTOR, ".who").text.startswith(f"{AUTHOR} author"), (
        answer.text
    )

    # "Open in my server": the server starts with the pinned environment, JupyterLab opens
    # the version's copy in ~/gallery/<entry>/v1/.
    pinning = {
        row.find_element(By.TAG_NAME, "th").text: row.find_element(By.TAG_NAME, "td").text
        for row in reviewer.css("#kh-gallery-pinning tr")
    }
    environment, profile = pinning["Environment"].split(" ")[0], pinning.get("Profile")
    assert f"You get the same build of '{environment}'." in text_of(reviewer, "#kh-gallery-build")
    click_in(reviewer.wait_for("#kh-gallery-open", 60), "Open in my server")
    notebook_url = f"{hub.url}/user/{REVIEWER}/lab/tree/gallery/{entry}/v1/notebook.ipynb"

    def in_lab(driver):
        fail_on_spawn_error(reviewer)
        if "/services/gallery/" in driver.current_url and reviewer.css("#kh-gallery-message"):
            raise AssertionError(f"not opened: {reviewer.page_text()}")
        return driver.current_url.startswith(notebook_url)

    reviewer.wait_until(in_lab, 240, f"the browser never reached {notebook_url}")
    reviewer.wait_for_text(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", "notebook.ipynb", 120)
    reviewer.wait_for_text(".jp-NotebookPanel .jp-Cell", "print('rows:', len(rows))", 120)
    breadcrumbs = reviewer.wait_for_text(".jp-BreadCrumbs", str(entry), 60).text
    assert f"gallery/{entry}/v1" in breadcrumbs.replace(" ", ""), breadcrumbs
    reviewer.wait_for_text(".jp-DirListing-itemText", "points.csv", 60)

    beside = as_reviewer.server(f"/api/contents/gallery/{entry}/v1/points.csv?content=1")
    assert beside.status_code == 200, beside.text
    assert beside.json()["content"] == POINTS.decode()
    server = as_reviewer.api(f"/users/{REVIEWER}").json()["servers"][""]
    pinned = {"environment": environment} | ({"profile": profile} if profile else {})
    assert server["user_options"] == pinned

    # The author's page refreshes itself until the report is there.
    author_browser.wait_until(
        lambda _: "reproduced" in {badge.text for badge in author_browser.css("#kh-gallery-badge")},
        REPRODUCE_WAIT,
        f"the version page's badge never read 'reproduced' within {REPRODUCE_WAIT} s",
    )
    rows = author_browser.css("#kh-gallery-reexecution-cells tbody tr")
    assert [row.text for row in rows] == ["1 same", "2 same"]
    reviewer.get(f"{hub.url}{SERVICE}/?q=reviewed")
    assert text_of(reviewer, "#kh-gallery-entries td.kh-gallery-badge") == "reproduced"
