"""Temporary reviewer seats on a real hub: a reviewer with only an anonymous reviewer link
presses "Open in a temporary seat", gets an ``rv-`` hub user signed in by the hub's seat
page, a server started with the version's pinned environment and profile, and lands in
JupyterLab on the version's files, copied as the seat's own account (the notebook without
the author's metadata). The seat reads that entry alone: another entry, the list,
publishing, comments and the gallery's pages are refused, and it is in no group; the
Environments service refuses it everything (listing, registering, rebuilding, its page). Tickets
are single-use, short-lived, bound to their link's entry, and only the gallery's count;
the per-link and site caps say so. When a seat ends, the gallery has the hub remove its
server, hub user, home (with a link to a root-owned file planted in it, which survives)
and kh- account, and nothing of anyone else.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import pwd
import re
import secrets
import sqlite3
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import wait_until
from tests.integration.test_gallery_service import SERVICE, call, publication
from tests.integration.test_gallery_threads import TOKEN
from tests.support.hub_process import free_port, remove_site_folder, start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration
ADMIN_PASSWORD = "an-admin-password-of-32-characters!"
ENVIRONMENTS = [
    {"name": "default", "default": True},
    {"name": "analysis", "display_name": "Analysis"},
    {"name": "lab-only", "groups": ["physics"]},
]
ENVIRONMENTS_SERVICE = "/services/environments"
SEAT_PAGE = re.compile(r"^/hub/gallery-seat/([A-Za-z0-9_-]{43})$")
SWEEP_WAIT_S = 120


@pytest.fixture(scope="module")
def site():
    folder = open_folder("gallery-seats")
    write_sample_data(folder / "data")
    seats = {"enabled": True, "hours": 2, "per_link": 1, "site_limit": 2}
    config = write_site_config(
        folder,
        auth={"shared_password": SHARED_PASSWORD, "admin_password": ADMIN_PASSWORD},
        gallery={"enabled": True, "port": free_port(), "reviewer_seats": seats},
        builder={"enabled": True, "port": free_port(), "allow_local_paths": True},
        environments=ENVIRONMENTS,
        groups={"physics": ["ada"]},
    )
    hub = start_hub(config, folder / "hub.log")
    ada = signed_in(hub.url, "ada", SHARED_PASSWORD)
    ada.request_token()
    admin = signed_in(hub.url, "admin", ADMIN_PASSWORD)
    admin.request_token()
    yield {"hub": hub, "folder": folder, "ada": ada, "admin": admin}
    if hub.process.poll() is None:
        hub.stop()
    remove_site_folder(folder)


def link_page(url: str, http: requests.Session | None = None) -> tuple[requests.Session, str]:
    """A reviewer's browser on a reviewer link's page: no cookie but the link's own."""
    http = http or requests.Session()
    page = http.get(url, timeout=30)
    assert page.status_code == 200, page.text[-2000:]
    return http, page.text


def ticket_from(hub_url: str, link_url: str) -> str:
    """Press "Open in a temporary seat" on the link's page: the ticket the gallery mints."""
    http, page = link_page(hub_url + link_url)
    token = TOKEN.search(page).group(1)
    pressed = http.post(
        f"{hub_url}{link_url}/v1/seat", data={"_xsrf": token}, allow_redirects=False, timeout=30
    )
    assert pressed.status_code == 303, pressed.text[-2000:]
    return SEAT_PAGE.match(pressed.headers["Location"]).group(1)


def redeem(hub_url: str, ticket: str) -> tuple[requests.Session, requests.Response]:
    """Open the hub's seat page and press "Start my seat", as a browser without an account."""
    http = requests.Session()
    url = f"{hub_url}/hub/gallery-seat/{ticket}"
    http.get(url, timeout=30)
    pressed = http.post(
        url, data={"_xsrf": http.cookies.get("_xsrf") or ""}, allow_redirects=False, timeout=120
    )
    return http, pressed


def account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def refusal(reply: requests.Response) -> str:
    """The refusal the hub's seat page shows, as the reader reads it."""
    match = re.search(r'id="kh-seat-refused" role="alert">([^<]*)<', reply.text)
    assert match, reply.text[-2000:]
    return " ".join(html.unescape(match.group(1)).split())


def tickets_table(folder, secret: str, **changes) -> None:
    digest = hashlib.sha256(secret.encode()).hexdigest()
    with sqlite3.connect(folder / "state" / "gallery.sqlite") as db:
        for column, value in changes.items():
            db.execute(
                f"UPDATE seat_tickets SET {column} = ? WHERE ticket_sha256 = ?", (value, digest)
            )


def test_a_reviewer_without_an_account_runs_the_version_in_a_temporary_seat(site):
    hub, ada, admin, folder = site["hub"], site["ada"], site["admin"], site["folder"]
    assert ada.spawn({"environment": "analysis"})[-1].get("ready"), hub.log_text()[-3000:]
    made = call(ada, "POST", "/entries", json=publication("Fit", "a = 1", "print(a)"))
    assert made.status_code == 201, made.text
    entry = made.json()["id"]
    other = call(ada, "POST", "/entries", json=publication("Other", "b = 2")).json()["id"]
    version = call(ada, "GET", f"/entries/{entry}/versions/1").json()
    profile = version["pinning"]["profile"]
    anonymous = {"days": 1, "anonymous": True}
    link_a = call(ada, "POST", f"/entries/{entry}/links", json=anonymous).json()
    link_b = call(ada, "POST", f"/entries/{other}/links", json={"days": 1}).json()

    # A forged ticket is refused, on the page and when pressed.
    forged = secrets.token_urlsafe(32)
    looked = requests.get(f"{hub.url}/hub/gallery-seat/{forged}", timeout=30)
    assert looked.status_code == 404
    assert refusal(looked).startswith("This seat ticket is not one the gallery gave")
    _, pressed = redeem(hub.url, forged)
    assert pressed.status_code == 404
    assert refusal(pressed).startswith("This seat ticket is not one the gallery gave")

    # The reviewer link's page offers the seat; pressing it leads to the hub's seat page.
    _, page = link_page(hub.url + link_a["url"])
    assert 'id="kh-gallery-seat"' in page and "Open in a temporary seat" in page
    assert "for 2 hours" in page and "by ada" not in page
    ticket = ticket_from(hub.url, link_a["url"])
    shown = requests.get(f"{hub.url}/hub/gallery-seat/{ticket}", timeout=30)
    assert shown.status_code == 200, shown.text[-2000:]
    assert "To run <strong>Fit</strong>, version 1" in shown.text
    assert 'id="kh-seat-start"' in shown.text

    # Without the hub's form token nothing is made.
    no_token = requests.post(f"{hub.url}/hub/gallery-seat/{ticket}", timeout=30)
    assert no_token.status_code == 403

    # Pressed: a seat user, signed in, its server starting with the pinned choice.
    browser, started = redeem(hub.url, ticket)
    assert started.status_code == 302, started.text[-2000:]
    pending = urlsplit(started.headers["Location"])
    name = pending.path.rsplit("/", 1)[-1]
    assert re.fullmatch(r"rv-[0-9a-f]{10}", name), pending
    fetch = f"/user/{name}/kioskhub/gallery/fetch?entry={entry}&version=1"
    assert parse_qs(pending.query) == {"next": [fetch]}
    seat = UserSession(hub.url, name)
    seat.http = browser
    made_token = admin.api(f"/users/{name}/tokens", "POST", json={"expires_in": 3600})
    assert made_token.status_code == 201, made_token.text
    seat.token = made_token.json()["token"]
    events = seat.wait_ready()
    assert events[-1].get("ready"), (events, hub.log_text()[-3000:])
    model = admin.api(f"/users/{name}").json()
    assert model["servers"][""]["user_options"] == {"environment": "analysis", "profile": profile}
    assert model["groups"] == [] and not model["admin"]

    # The next step lands in JupyterLab on the copy, written as the seat's own account.
    landed = browser.get(hub.url + fetch, timeout=120)
    assert landed.status_code == 200, landed.text[-2000:]
    assert urlsplit(landed.url).path == f"/user/{name}/lab/tree/gallery/{entry}/v1/notebook.ipynb"
    copy = folder / "homes" / name / "gallery" / str(entry) / "v1"
    uid = pwd.getpwnam(f"kh-{name}").pw_uid
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == [
        "data/points.csv", "notebook.ipynb"
    ]  # fmt: skip
    assert all(p.stat().st_uid == uid for p in copy.rglob("*"))
    assert (copy / "data" / "points.csv").read_bytes() == b"x,y\n1,2\n"
    copied = json.loads((copy / "notebook.ipynb").read_text())
    assert "authors" not in copied["metadata"]  # an anonymous link hides the author
    assert [c["source"] for c in copied["cells"]] == ["a = 1", "print(a)"]

    # The seat reads its entry alone, and only to copy it.
    def gallery(method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {seat.token}"}
        return requests.request(
            method, f"{hub.url}{SERVICE}{path}", headers=headers, timeout=30, **kwargs
        )

    record = gallery("GET", f"/api/entries/{entry}/versions/1")
    assert record.status_code == 200 and "author" not in record.json()
    assert gallery("GET", f"/api/entries/{other}/versions/1").status_code == 404
    hidden = seat.server("/kioskhub/gallery/fetch", "POST", json={"entry": other, "version": 1})
    assert hidden.status_code == 404, hidden.text
    assert hidden.json()["message"] == "No such gallery version, or you may not read it."
    assert not (folder / "homes" / name / "gallery" / str(other)).exists()
    seat_says = "a temporary reviewer seat only copies the entry of its reviewer link"
    for method, path, body in [
        ("GET", "/api/entries", None),
        ("POST", "/api/entries", publication("Mine", "c = 3")),
        ("POST", f"/api/entries/{entry}/versions", publication("Mine", "c = 3")),
        ("POST", f"/api/entries/{entry}/versions/1/threads", {"cell_id": "c0", "text": "hi"}),
        ("GET", f"/api/entries/{entry}", None),
        ("GET", f"/entries/{entry}", None),
    ]:
        refused = gallery(method, path, json=body)
        assert refused.status_code == 403, (path, refused.text[-500:])
        assert seat_says in refused.text, refused.text[-500:]
    joined = seat.api("/groups/physics/users", "POST", json={"users": [name]})
    assert joined.status_code == 403

    # The Environments service: a seat launches, and does nothing else there.
    listed = requests.get(
        f"{hub.url}{ENVIRONMENTS_SERVICE}/api/environments",
        headers={"Authorization": f"token {ada.token}"}, timeout=30,
    )  # fmt: skip
    assert listed.status_code == 200, listed.text
    site_environment = listed.json()["environments"][0]["id"]
    builder_says = (
        "a temporary reviewer seat launches only the gallery version it was opened for; it may "
        "not register, build or list environments"
    )
    repository = {"name": "mine", "repository": str(folder / "data")}
    for method, path, body in [
        ("GET", "/api/environments", None),
        ("POST", "/api/environments", repository),
        ("GET", f"/api/environments/{site_environment}", None),
        ("POST", f"/api/environments/{site_environment}/rebuild", {}),
        ("GET", f"/api/environments/{site_environment}/log", None),
    ]:
        refused = requests.request(
            method, f"{hub.url}{ENVIRONMENTS_SERVICE}{path}", json=body, timeout=30,
            headers={"Authorization": f"token {seat.token}"},
        )  # fmt: skip
        assert refused.status_code == 403, (path, refused.text[-500:])
        assert refused.json()["message"].startswith(builder_says), refused.text[-500:]
    environments_page = browser.get(f"{hub.url}{ENVIRONMENTS_SERVICE}/", timeout=60)
    assert environments_page.status_code == 403, environments_page.text[-2000:]
    assert "A temporary reviewer seat launches only" in environments_page.text
    assert "Register and build" not in environments_page.text

    # The ticket opened one seat; it opens no second.
    _, again = redeem(hub.url, ticket)
    assert again.status_code == 410
    assert refusal(again).startswith("This seat ticket was used already")

    # Link A has its one seat: its page says so, and pressing anyway is refused.
    http, page = link_page(hub.url + link_a["url"])
    assert "This reviewer link already has its 1 temporary seats in use" in page
    assert 'id="kh-gallery-seat-unavailable" disabled' in page
    full = http.post(
        f"{hub.url}{link_a['url']}/v1/seat", data={"_xsrf": TOKEN.search(page).group(1)},
        allow_redirects=False,
    )  # fmt: skip
    assert full.status_code == 409
    assert "This reviewer link already has its 1 temporary seats in use" in full.text

    # Tickets of link B: one expired, one altered to another link's entry, one taken
    # past the link's cap, one whose link is revoked, one pressed by a lab account.
    expired, altered, first, second, revoked, for_ada = (
        ticket_from(hub.url, link_b["url"]) for _ in range(6)
    )
    ada_page = ada.http.get(f"{hub.url}/hub/gallery-seat/{for_ada}", timeout=30)
    shown_to_ada = ada_page.text[ada_page.text.find('id="kh-seat"') :][:1500]
    assert 'id="kh-seat-lab-account"' in shown_to_ada, shown_to_ada
    assert "signed in as ada" in shown_to_ada
    ada_pressed = ada.http.post(
        f"{hub.url}/hub/gallery-seat/{for_ada}", data={"_xsrf": ada.http.cookies.get("_xsrf")},
        allow_redirects=False, timeout=30,
    )  # fmt: skip
    assert ada_pressed.status_code == 409
    assert refusal(ada_pressed).startswith("You are signed in as ada")
    tickets_table(folder, expired, expires=time.time() - 1)
    _, reply = redeem(hub.url, expired)
    assert reply.status_code == 410 and refusal(reply).startswith("This seat ticket has expired")
    tickets_table(folder, altered, link_id=link_a["id"])
    _, reply = redeem(hub.url, altered)
    assert reply.status_code == 403
    assert refusal(reply) == "This seat ticket is for another reviewer link's entry."
    _, made_b = redeem(hub.url, first)
    assert made_b.status_code == 302, made_b.text[-2000:]
    name_b = urlsplit(made_b.headers["Location"]).path.rsplit("/", 1)[-1]
    _, over = redeem(hub.url, second)
    assert over.status_code == 429
    assert refusal(over).startswith("This reviewer link already has its 1 temporary seats")
    call(ada, "DELETE", f"/entries/{other}/links/{link_b['id']}")
    _, gone = redeem(hub.url, revoked)
    assert gone.status_code == 410 and "revoked" in refusal(gone)

    # Two seats are all this site has: a third link's page says so.
    link_c = call(ada, "POST", f"/entries/{entry}/links", json={"days": 1}).json()
    _, page = link_page(hub.url + link_c["url"])
    assert "All 2 temporary seats of this site are in use" in page

    # A version pinned to an environment kept for a group cannot go to a seat.
    ada.stop_server()
    assert ada.spawn({"environment": "lab-only"})[-1].get("ready"), hub.log_text()[-3000:]
    kept = call(ada, "POST", "/entries", json=publication("Kept", "d = 4")).json()["id"]
    link_k = call(ada, "POST", f"/entries/{kept}/links", json={"days": 1}).json()
    _, page = link_page(hub.url + link_k["url"])
    assert "The environment &#39;lab-only&#39; of this version is not open to everyone" in page

    # The seat ends: the gallery has the hub remove its server, user, home and account;
    # a link planted in its home to a root-owned file is removed, not followed.
    home = folder / "homes" / name
    system = folder / "system-etc"
    system.mkdir(mode=0o755)
    (system / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    os.symlink(system / "passwd", home / "passwd-link")
    os.symlink(folder / "homes" / "ada", home / "ada-home")
    gid = pwd.getpwnam(f"kh-{name}").pw_gid
    for link in ("passwd-link", "ada-home"):
        os.chown(home / link, uid, gid, follow_symlinks=False)
    ada_home = sorted(p.name for p in (folder / "homes" / "ada").iterdir())
    with sqlite3.connect(folder / "state" / "gallery.sqlite") as db:
        db.execute("UPDATE seats SET expires = ?", (time.time() - 1,))

    def removed(seat_name: str) -> bool:
        return (
            admin.api(f"/users/{seat_name}").status_code == 404
            and not os.path.lexists(folder / "homes" / seat_name)
            and account(f"kh-{seat_name}") is None
        )

    wait_until(
        lambda: removed(name) and removed(name_b),
        SWEEP_WAIT_S,
        f"the seats were not removed:\n{hub.log_text()[-3000:]}",
    )
    assert (system / "passwd").read_text() == "root:x:0:0:root:/root:/bin/bash\n"
    assert os.stat(system / "passwd").st_uid == 0
    assert sorted(p.name for p in (folder / "homes" / "ada").iterdir()) == ada_home
    signed_out = browser.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=30)
    assert signed_out.status_code == 302 and "/hub/login" in signed_out.headers["Location"]
    # With the seats gone, link C may open one again.
    _, page = link_page(hub.url + link_c["url"])
    assert 'id="kh-gallery-seat"' in page
