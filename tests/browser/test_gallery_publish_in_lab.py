"""Publishing from JupyterLab in a real browser: the notebook runs, "Publish to the
gallery…" is run from the command palette (and is in the File menu), the dialog's form is
filled and a file beside the notebook ticked, and the notification links the entry, which
the gallery then holds with that file."""

from __future__ import annotations

import pytest
import requests
from selenium.webdriver.common.keys import Keys

from tests.browser.test_lab_in_browser import kernel_is_ready, reach_lab, sign_in
from tests.conftest import SHARED_PASSWORD
from tests.support.gallery_hub import gallery_hub
from tests.support.user_session import signed_in

pytestmark = pytest.mark.browser

USERNAME = "chromium-gal"
"""A name of its own: servers' cgroups are named after their user, on the whole machine."""
COMMAND = "Publish to the gallery…"
NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "id": "c0", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import os\n"
                   "rows = open(os.environ['KIOSKHUB_DATA_DIR'] + '/beamline-sample.csv')\n"
                   "print('rows:', len(rows.readlines()))"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}  # fmt: skip


@pytest.fixture(scope="module")
def hub():
    with gallery_hub("gallery-browser") as (hub, _folder):
        yield hub


def test_the_publish_command_publishes_the_open_notebook(hub, browser):
    user = signed_in(hub.url, USERNAME, SHARED_PASSWORD)
    assert user.spawn()[-1].get("ready"), hub.log_text()[-3000:]
    for path, model in [
        ("pub", {"type": "directory"}),
        ("pub/beam.ipynb", {"type": "notebook", "content": NOTEBOOK}),
        ("pub/table.csv", {"type": "file", "format": "text", "content": "a,b\n1,2\n"}),
    ]:
        assert user.server(f"/api/contents/{path}", "PUT", json=model).status_code in (200, 201)

    sign_in(browser, hub.url, USERNAME, SHARED_PASSWORD)
    lab_prefix = f"{hub.url}/user/{USERNAME}/lab"
    reach_lab(browser, lab_prefix)
    browser.get(f"{lab_prefix}/tree/pub/beam.ipynb")
    browser.wait_for(".jp-NotebookPanel .jp-Notebook .jp-Cell", 120)
    browser.wait_until(lambda _: kernel_is_ready(browser), 120, "the kernel never became idle")
    browser.click_text(".lm-MenuBar-itemLabel", "Run", 30)
    browser.click_text(".lm-Menu-itemLabel", "Run All Cells", 30)
    browser.wait_for_text(".jp-OutputArea-output", "rows:", 120)

    # In the File menu, and run from the command palette.
    browser.click_text(".lm-MenuBar-itemLabel", "File", 30)
    browser.wait_for_text(".lm-Menu-itemLabel", COMMAND, 30)
    browser.driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    browser.driver.find_element("tag name", "body").send_keys(Keys.CONTROL, Keys.SHIFT, "c")
    palette = browser.wait_for(".lm-CommandPalette-input", 30)
    palette.send_keys("Publish to the gallery")
    browser.click_text(".lm-CommandPalette-itemLabel", COMMAND, 30)

    form = browser.wait_for(".jp-Dialog .kh-gallery-publish-form", 60)
    title = form.find_element("css selector", "input[name=title]")
    title.clear()
    title.send_keys("Beam <b>rows</b>")
    form.find_element("css selector", "textarea[name=abstract]").send_keys("Counts rows.")
    form.find_element("css selector", "input[name=tags]").send_keys("beam, rows")
    form.find_element("css selector", "input[name=file][value='table.csv']").click()
    browser.click_text(".jp-Dialog button", "Publish", 30)

    toast = browser.wait_for_text(
        ".jp-Notification-Toast-success, .Toastify__toast", "Published pub/beam.ipynb", 180
    )
    assert "as gallery entry 1, version 1: /services/gallery/entries/1/v1" in toast.text
    assert "Open in the gallery" in toast.text

    # The notification's action opens the entry's page in a new tab, the title as text.
    lab_tab = browser.driver.current_window_handle
    browser.click_text(".jp-Notification-Toast-success button, .Toastify__toast button",
                       "Open in the gallery", 30)  # fmt: skip
    browser.wait_until(lambda driver: len(driver.window_handles) == 2, 30, "no new tab")
    browser.driver.switch_to.window(next(h for h in browser.driver.window_handles if h != lab_tab))
    browser.wait_for_url(lambda url: "/services/gallery/entries/1/v1" in url, 60, "the entry")
    browser.wait_for_text("body", "Beam <b>rows</b>", 60)

    entry = requests.get(
        f"{hub.url}/services/gallery/api/entries/1/versions/1",
        headers={"Authorization": f"token {user.token}"},
        timeout=60,
    ).json()
    assert [f["name"] for f in entry["manifest"]["files"]] == ["table.csv"]
    assert entry["claims"]["kernel"] == "python3"
    assert [read["path"].rsplit("/", 1)[-1] for read in entry["claims"]["data_reads"]] == [
        "beamline-sample.csv"
    ]
    listed = requests.get(
        f"{hub.url}/services/gallery/api/entries/1",
        headers={"Authorization": f"token {user.token}"},
        timeout=60,
    ).json()
    assert listed["title"] == "Beam <b>rows</b>" and listed["tags"] == ["beam", "rows"]
