"""A reviewer without an account, in a real browser, runs a version in a temporary seat.

The author publishes a notebook with a file beside it and makes an anonymous reviewer link.
The reviewer, in a Chromium that never signed in, opens the link, presses "Open in a
temporary seat", then "Start my seat" on the hub's page, follows the server's start and
lands in JupyterLab with the version's notebook open and its file beside it. When the seat
ends, the same browser is signed out and its account is gone."""

from __future__ import annotations

import pwd
import sqlite3
import time

import pytest

from tests.browser.test_gallery_review_in_browser import NOTEBOOK, POINTS, click_in, publish
from tests.browser.test_lab_in_browser import fail_on_spawn_error
from tests.conftest import SHARED_PASSWORD
from tests.support.gallery_hub import gallery_hub
from tests.support.user_session import signed_in

pytestmark = pytest.mark.browser

AUTHOR = "chromium-seat-auth"
SERVICE = "/services/gallery"
TITLE = "Rows for a guest reviewer"
END_WAIT_S = 120


def test_a_reviewer_without_an_account_lands_in_jupyterlab_in_a_temporary_seat(browser):
    seats = {"enabled": True, "hours": 1}
    with gallery_hub("gallery-seat-browser", reviewer_seats=seats) as (hub, folder):
        author = signed_in(hub.url, AUTHOR, SHARED_PASSWORD)
        author.request_token()
        assert author.spawn()[-1].get("ready"), hub.log_text()[-3000:]
        entry = publish(author, TITLE, NOTEBOOK, {"points.csv": POINTS})
        link = author.http.post(
            f"{hub.url}{SERVICE}/api/entries/{entry}/links",
            json={"days": 1, "anonymous": True},
            headers={"Authorization": f"token {author.token}"},
            timeout=30,
        ).json()["url"]

        browser.get(hub.url + link)
        assert browser.wait_for("#kh-gallery-title", 60).text == TITLE
        click_in(browser.wait_for("#kh-gallery-seat", 60), "Open in a temporary seat")
        what = browser.wait_for("#kh-seat-what", 60).text
        assert f"To run {TITLE}, version 1" in what, what
        browser.wait_for("#kh-seat-start", 30).click()

        def in_lab(driver):
            fail_on_spawn_error(browser)
            if browser.css("#kh-seat-refused"):
                raise AssertionError(f"no seat: {browser.page_text()}")
            return "/lab/tree/gallery/" in driver.current_url

        browser.wait_until(in_lab, 240, "the browser never reached JupyterLab")
        name = browser.url.split("/user/", 1)[1].split("/", 1)[0]
        assert browser.url.startswith(
            f"{hub.url}/user/{name}/lab/tree/gallery/{entry}/v1/notebook.ipynb"
        ), browser.url
        browser.wait_for_text(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", "notebook.ipynb", 120)
        browser.wait_for_text(".jp-NotebookPanel .jp-Cell", "print('rows:', len(rows))", 120)
        browser.wait_for_text(".jp-DirListing-itemText", "points.csv", 60)
        home = folder / "homes" / name
        assert (home / "gallery" / str(entry) / "v1" / "points.csv").read_bytes() == POINTS

        # The seat ends: its server, account and home go, and the browser is signed out.
        with sqlite3.connect(folder / "state" / "gallery.sqlite") as db:
            db.execute("UPDATE seats SET expires = ?", (time.time() - 1,))
        deadline = time.monotonic() + END_WAIT_S
        while home.exists() or account_exists(f"kh-{name}"):
            assert time.monotonic() < deadline, hub.log_text()[-3000:]
            time.sleep(1)
        browser.get(f"{hub.url}/hub/home")
        browser.wait_for_url(lambda url: "/hub/login" in url, 60, "the sign-in page")


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
