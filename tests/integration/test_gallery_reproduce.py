"""Reproducing a version on a real hub: bob opens ada's site-visible entry from its page; the
hub's spawn URL starts his server with the pinned environment, and his server copies the
version into ``~/gallery/<entry>/v1/``, owned by his account, byte for byte; a second Open
reuses the running server and the copy, a changed copy is kept and the next goes beside it;
a file name made hostile in the gallery's database is refused with nothing written; a reader
who may not read an entry gets 404; a server running another environment is left running,
saying so; a reviewer link's page says why it cannot be opened there, and with temporary
seats off (the default) neither the gallery nor the hub makes one."""

from __future__ import annotations

import hashlib
import json
import pwd
import re
import sqlite3
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_gallery_service import SERVICE, call, publication
from tests.integration.test_gallery_threads import TOKEN
from tests.support.hub_process import free_port, remove_site_folder, start_hub, write_site_config
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration
ENVIRONMENTS = [
    {"name": "default", "default": True},
    {"name": "analysis", "display_name": "Analysis", "description": "The pinned one."},
]


@pytest.fixture(scope="module")
def site():
    folder = open_folder("gallery-reproduce")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder, gallery={"enabled": True, "port": free_port()}, environments=ENVIRONMENTS
    )
    hub = start_hub(config, folder / "hub.log")
    users = {name: signed_in(hub.url, name, SHARED_PASSWORD) for name in ("ada", "bob")}
    yield {"hub": hub, "folder": folder, **users}
    if hub.process.poll() is None:
        hub.stop()
    remove_site_folder(folder)


def test_bob_opens_adas_version_in_his_server(site):
    hub, ada, bob, folder = site["hub"], site["ada"], site["bob"], site["folder"]
    assert ada.spawn({"environment": "analysis"})[-1].get("ready"), hub.log_text()[-3000:]
    body = publication("Fit", "a = 1", "print(a)", visibility="site")
    made = call(ada, "POST", "/entries", json=body)
    assert made.status_code == 201, made.text
    entry = made.json()["id"]
    draft = call(ada, "POST", "/entries", json=publication("Mine", "b = 2")).json()["id"]
    version = call(ada, "GET", f"/entries/{entry}/versions/1").json()
    assert version["pinning"]["environment"] == "analysis"

    # The page offers the button, says the build is the same, and carries its token.
    page_url = f"{hub.url}{SERVICE}/entries/{entry}/v1"
    page = bob.http.get(page_url, timeout=30)
    assert page.status_code == 200, page.text[-2000:]
    assert "You get the same build of &#39;analysis&#39;." in page.text
    assert f'action="{SERVICE}/entries/{entry}/v1/open"' in page.text
    token = TOKEN.search(page.text).group(1)

    # Open, with no server running: the hub's spawn URL with the pinned environment.
    fetch = f"/user/bob/kioskhub/gallery/fetch?entry={entry}&version=1"
    opened = bob.http.post(f"{page_url}/open", data={"_xsrf": token}, allow_redirects=False)
    assert opened.status_code == 303, opened.text[-2000:]
    spawn = urlsplit(opened.headers["Location"])
    assert spawn.path == "/hub/spawn/bob"
    profile = version["pinning"]["profile"]
    assert parse_qs(spawn.query) == {
        "opt-environment": ["analysis"], "opt-profile": [profile], "next": [fetch]
    }  # fmt: skip
    started = bob.http.get(hub.url + opened.headers["Location"], timeout=120)
    assert started.status_code == 200, started.text[-2000:]
    assert bob.wait_ready()[-1].get("ready"), hub.log_text()[-3000:]
    server = bob.api("/users/bob").json()["servers"][""]
    assert server["user_options"] == {"environment": "analysis", "profile": profile}

    # The hub's next step: bob's server copies the version as bob and opens JupyterLab.
    landed = bob.http.get(hub.url + fetch, timeout=120)
    assert landed.status_code == 200, landed.text[-2000:]
    assert urlsplit(landed.url).path == f"/user/bob/lab/tree/gallery/{entry}/v1/notebook.ipynb"
    copy = folder / "homes" / "bob" / "gallery" / str(entry) / "v1"
    bob_uid = pwd.getpwnam("kh-bob").pw_uid
    published = {"notebook.ipynb": version["manifest"]["notebook"]["sha256"]}
    published |= {f["name"]: f["sha256"] for f in version["manifest"]["files"]}
    copied = {
        str(path.relative_to(copy)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in copy.rglob("*")
        if path.is_file()
    }
    assert copied == published
    for path in [copy.parent.parent, *copy.parent.rglob("*")]:
        assert path.stat().st_uid == bob_uid, path

    # A navigation another site started does not copy anything.
    elsewhere = bob.http.get(hub.url + fetch, headers={"Sec-Fetch-Site": "cross-site"})
    assert elsewhere.status_code == 403
    assert "Open gallery versions from the gallery&#39;s page." in elsewhere.text

    # A second Open reuses the running server and the identical copy.
    again = bob.http.post(f"{page_url}/open", data={"_xsrf": token}, allow_redirects=False)
    assert (again.status_code, again.headers["Location"]) == (303, fetch)
    reused = bob.server("/kioskhub/gallery/fetch", "POST", json={"entry": entry, "version": 1})
    assert reused.json() == {
        "folder": f"gallery/{entry}/v1", "path": f"gallery/{entry}/v1/notebook.ipynb",
        "reused": True,
    }  # fmt: skip
    assert sorted(p.name for p in copy.parent.iterdir()) == ["v1"]

    # A copy bob changed is kept: the next copy goes next to it.
    changed = {"type": "file", "format": "text", "content": "bob's notes"}
    saved = bob.server(f"/api/contents/gallery/{entry}/v1/notebook.ipynb", "PUT", json=changed)
    assert saved.status_code == 200, saved.text
    beside = bob.server("/kioskhub/gallery/fetch", "POST", json={"entry": entry, "version": 1})
    assert beside.json()["folder"] == f"gallery/{entry}/v1-2", beside.text
    assert (copy / "notebook.ipynb").read_text() == "bob's notes"
    assert (copy.parent / "v1-2" / "notebook.ipynb").stat().st_uid == bob_uid

    # A file name altered in the gallery's database is refused; nothing is written.
    database = folder / "state" / "gallery.sqlite"
    with sqlite3.connect(database) as db:
        manifest = json.loads(
            db.execute(
                "SELECT manifest FROM versions WHERE entry_id = ? AND number = 1", (entry,)
            ).fetchone()[0]
        )
        manifest["files"][0]["name"] = "../../../escaped.csv"
        db.execute(
            "UPDATE versions SET manifest = ? WHERE entry_id = ? AND number = 1",
            (json.dumps(manifest), entry),
        )
    hostile = bob.server("/kioskhub/gallery/fetch", "POST", json={"entry": entry, "version": 1})
    assert hostile.status_code == 400, hostile.text
    assert hostile.json()["message"].startswith(
        "Not copied: the version lists a file named '../../../escaped.csv', which is not a "
        "plain relative path"
    )
    assert not list((folder / "homes").rglob("escaped.csv"))
    assert sorted(p.name for p in copy.parent.iterdir()) == ["v1", "v1-2"]

    # A reader who may not read the entry: 404 from the page's button and from the server.
    refused = bob.http.post(
        f"{hub.url}{SERVICE}/entries/{draft}/v1/open", data={"_xsrf": token},
        allow_redirects=False,
    )  # fmt: skip
    assert refused.status_code == 404, refused.text[-2000:]
    hidden = bob.server("/kioskhub/gallery/fetch", "POST", json={"entry": draft, "version": 1})
    assert hidden.status_code == 404
    assert hidden.json()["message"] == "No such gallery version, or you may not read it."
    assert not (folder / "homes" / "bob" / "gallery" / str(draft)).exists()

    # Without the page's token the button does nothing.
    forged = bob.http.post(f"{page_url}/open", allow_redirects=False)
    assert forged.status_code == 403

    # A server running another environment is left running, and bob is told so.
    bob.stop_server()
    assert bob.spawn({"environment": "default"})[-1].get("ready"), hub.log_text()[-3000:]
    other = bob.http.post(f"{page_url}/open", data={"_xsrf": token}, allow_redirects=False)
    assert other.status_code == 409, other.text[-2000:]
    assert (
        "Your server runs the environment &#39;default&#39;; this version needs "
        "&#39;analysis&#39;. Stop your server on the hub&#39;s home page"
    ) in other.text
    assert 'id="kh-gallery-home" href="/hub/home"' in other.text
    assert bob.api("/users/bob").json()["servers"][""]["ready"]

    # A reviewer link's page: no Open, and why.
    link = call(ada, "POST", f"/entries/{entry}/links", json={"days": 1}).json()["url"]
    reviewer = requests.get(hub.url + link, timeout=30)
    assert reviewer.status_code == 200, reviewer.text[-2000:]
    assert 'id="kh-gallery-open-unavailable" disabled' in reviewer.text
    assert re.search(
        r"Reviewers without an account cannot run it here: ask the author for a lab account, "
        r"or download the RO-Crate\.",
        reviewer.text,
    )
    # Temporary seats are off at this site (the default): no seat, however asked.
    assert 'id="kh-gallery-seat"' not in reviewer.text
    token = TOKEN.search(reviewer.text).group(1)
    cookies = reviewer.cookies
    seat = requests.post(
        f"{hub.url}{link}/v1/seat", data={"_xsrf": token}, cookies=cookies,
        allow_redirects=False, timeout=30,
    )  # fmt: skip
    assert seat.status_code == 404, seat.text[-2000:]
    assert "this site offers no temporary seats: ask the author for a lab account" in seat.text
    hub_page = requests.get(f"{hub.url}/hub/gallery-seat/{'x' * 43}", timeout=30)
    assert hub_page.status_code == 404
    assert "This site offers no temporary seats" in hub_page.text
