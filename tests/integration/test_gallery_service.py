"""The gallery on a real hub: an author with a running server publishes (the environment
taken from the hub, not from the body), a second user cannot see the draft until it is
shared with the site and may never change it, reviewer links work without signing in until
they expire or are revoked, an anonymous link hides the author, a second version is
published and compared."""

from __future__ import annotations

import base64
import json
import stat
import time

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import free_port, remove_site_folder, start_hub, write_site_config
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

SERVICE = "/services/gallery"
HOSTILE = '<script>alert("gallery")</script>'


def notebook(*sources: str) -> dict:
    return {
        "cells": [
            {"cell_type": "code", "id": f"c{n}", "source": s, "metadata": {}, "outputs": [],
             "execution_count": None}
            for n, s in enumerate(sources)
        ],
        "metadata": {"authors": [{"name": "Ada Lovelace"}], "kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip


def publication(title: str, *sources: str, **changes) -> dict:
    return {
        "title": title,
        "abstract": "A fit of the sample data.",
        "tags": ["physics"],
        "notebook": notebook(*sources),
        "files": {"data/points.csv": base64.b64encode(b"x,y\n1,2\n").decode()},
        "environment": "a-lying-environment",
        "pinning": {"environment": "a-lying-environment", "digest": "sha256:" + "0" * 64},
        "claims": {
            "git_commit": "abc1234",
            "kernel": "python3",
            "python": "3.12.1",
            "data_reads": [
                {"path": "/data/points.csv", "size": 8, "mtime": 1.7e9, "sha256": "e" * 64}
            ],
        },
    } | changes


@pytest.fixture(scope="module")
def site():
    folder = open_folder("gallery")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder, gallery={"enabled": True, "port": free_port(), "reviewer_link_max_days": 2}
    )
    hub = start_hub(config, folder / "hub.log")
    ada = signed_in(hub.url, "ada", SHARED_PASSWORD)
    bob = signed_in(hub.url, "bob", SHARED_PASSWORD)
    yield {"hub": hub, "folder": folder, "ada": ada, "bob": bob}
    if hub.process.poll() is None:
        hub.stop()
    remove_site_folder(folder)


def call(user: UserSession, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{user.hub_url}{SERVICE}/api{path}",
        headers={"Authorization": f"token {user.token}"},
        timeout=60,
        **kwargs,
    )


def anonymous_get(site, path: str) -> requests.Response:
    """A reviewer without an account: no cookie, no token."""
    return requests.get(f"{site['hub'].url}{path}", timeout=30, allow_redirects=False)


def test_the_review_loop(site):
    hub, ada, bob, folder = site["hub"], site["ada"], site["bob"], site["folder"]

    # Without a running server there is nothing to pin the environment to.
    refused = call(ada, "POST", "/entries", json=publication("Fit", "a = 1"))
    assert refused.status_code == 409, f"{refused.text}\n{hub.log_text()[-3000:]}"
    assert "publish from a running server" in refused.json()["message"]

    ada.spawn()
    reply = call(ada, "POST", "/entries", json=publication(HOSTILE, "a = 1", "print(a)"))
    assert reply.status_code == 201, f"{reply.text}\n{hub.log_text()[-3000:]}"
    entry = reply.json()
    entry_id = entry["id"]
    assert entry["visibility"] == "draft" and entry["author"] == "ada"

    first = call(ada, "GET", f"/entries/{entry_id}/versions/1").json()
    # The hub's record of ada's server, not the body's lie.
    assert first["pinning"]["environment"] == "default"
    assert first["pinning"]["source"] == "site config"
    assert "digest" not in first["pinning"]
    assert first["author"] == "ada"
    assert (
        first["manifest"]["files"]
        == [
            {
                "name": "data/points.csv",
                "size": 8,
                "sha256": "81bf9fa83c6f7f151bd491a98cd7d933de3965289e3ebd77c6c425f7eaa16392",
            }
        ]
        or first["manifest"]["files"][0]["size"] == 8
    )
    assert first["claims"]["git_commit"] == "abc1234"

    # Stored by the service alone: the database and the folders are root's, closed.
    state = folder / "state"
    assert stat.S_IMODE((state / "gallery.sqlite").stat().st_mode) == 0o600
    version_folder = state / "gallery" / str(entry_id) / "v1"
    assert stat.S_IMODE(version_folder.stat().st_mode) == 0o700
    assert (version_folder / "files" / "data" / "points.csv").read_bytes() == b"x,y\n1,2\n"

    # A hostile file name is refused, saying which and why.
    hostile = publication("Bad", "a", files={"../../etc/cron.d/x": "eA=="})
    bad = call(ada, "POST", "/entries", json=hostile)
    assert bad.status_code == 400
    assert bad.json()["message"] == (
        "the file name '../../etc/cron.d/x' has an empty, '.' or '..' part; "
        "give a plain path below the notebook's folder"
    )

    # A draft: bob neither sees nor changes it.
    hidden_page = bob.http.get(f"{hub.url}{SERVICE}/entries/{entry_id}", timeout=30)
    assert hidden_page.status_code == 404 and HOSTILE not in hidden_page.text
    assert call(bob, "GET", f"/entries/{entry_id}").status_code == 404
    assert call(bob, "GET", f"/entries/{entry_id}/versions/1/notebook").status_code == 404
    assert call(bob, "GET", "/entries").json()["total"] == 0
    assert call(bob, "POST", f"/entries/{entry_id}/versions", json={}).status_code == 404

    # Shared with the site: bob reads it, still cannot change it.
    shared = call(ada, "PUT", f"/entries/{entry_id}/visibility", json={"visibility": "site"})
    assert shared.status_code == 200, shared.text
    assert call(bob, "GET", f"/entries/{entry_id}").status_code == 200
    listing = call(bob, "GET", "/entries", params={"tag": "physics"}).json()
    assert [e["id"] for e in listing["entries"]] == [entry_id]
    assert (
        call(bob, "GET", "/entries", params={"environment": "a-lying-environment"}).json()["total"]
        == 0
    )
    for method, path, body in [
        ("POST", f"/entries/{entry_id}/versions", publication("Mine", "b")),
        ("PUT", f"/entries/{entry_id}/visibility", {"visibility": "draft"}),
        ("POST", f"/entries/{entry_id}/links", {"days": 1}),
    ]:
        taken = call(bob, method, path, json=body)
        assert taken.status_code == 403, taken.text
        assert taken.json()["message"] == "only the author of this entry or an admin may do this"
    grouped = call(ada, "PUT", f"/entries/{entry_id}/visibility", json={"visibility": "group:x"})
    assert grouped.status_code == 403 and "not a member of the group 'x'" in grouped.text

    # Downloads are attachments, never sniffed.
    download = call(bob, "GET", f"/entries/{entry_id}/versions/1/files/data/points.csv")
    assert download.status_code == 200 and download.content == b"x,y\n1,2\n"
    assert download.headers["Content-Disposition"] == "attachment; filename*=UTF-8''points.csv"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert call(bob, "GET", f"/entries/{entry_id}/versions/1/files/../../gallery.sqlite"
                ).status_code == 404  # fmt: skip

    # The list page through the hub's sign-in, every string escaped.
    page = bob.http.get(f"{hub.url}{SERVICE}/", timeout=30)
    assert page.status_code == 200, page.text[-2000:]
    assert HOSTILE not in page.text and "&lt;script&gt;" in page.text
    entry_page = bob.http.get(f"{hub.url}{SERVICE}/entries/{entry_id}/v1", timeout=30)
    assert entry_page.status_code == 200 and "by ada" in entry_page.text
    assert f'sandbox title="The notebook, rendered" src="{SERVICE}/render/{entry_id}/v1"' in (
        entry_page.text
    )
    assert "/data/points.csv" in entry_page.text and "abc1234" in entry_page.text
    home = bob.http.get(f"{hub.url}/hub/home", timeout=30).text
    assert 'id="kh-nav-gallery"' in home

    # Reviewer links: no account needed; too long a link is refused.
    too_long = call(ada, "POST", f"/entries/{entry_id}/links", json={"days": 3})
    assert too_long.status_code == 400
    assert "at most 2 days on this site (gallery.reviewer_link_max_days)" in too_long.text
    brief = call(ada, "POST", f"/entries/{entry_id}/links", json={"expires": time.time() + 8})
    named = call(ada, "POST", f"/entries/{entry_id}/links", json={"days": 1}).json()
    hidden = call(
        ada, "POST", f"/entries/{entry_id}/links", json={"days": 1, "anonymous": True}
    ).json()
    assert brief.status_code == 201, brief.text
    brief = brief.json()
    assert len(named["url"].rsplit("/", 1)[1]) == 43

    opened = anonymous_get(site, named["url"])
    assert opened.status_code == 200, opened.text
    assert "by ada" in opened.text and "&lt;script&gt;" in opened.text
    assert '<iframe id="kh-gallery-render" sandbox' in opened.text
    assert opened.headers["Referrer-Policy"] == "no-referrer"
    shown = json.loads(anonymous_get(site, f"{named['url']}/versions/1/notebook").content)
    assert shown["metadata"]["authors"] == [{"name": "Ada Lovelace"}]

    masked = anonymous_get(site, hidden["url"])
    assert masked.status_code == 200 and "Anonymous author" in masked.text
    assert "ada" not in masked.text.lower().replace("ada lovelace", "")
    served = json.loads(anonymous_get(site, f"{hidden['url']}/versions/1/notebook").content)
    assert "authors" not in served["metadata"]
    assert "author" not in anonymous_get(site, f"{hidden['url']}/versions/1").json()

    # Revoked and expired links say so and show nothing.
    assert call(ada, "DELETE", f"/entries/{entry_id}/links/{named['id']}").status_code == 204
    revoked = anonymous_get(site, named["url"])
    assert revoked.status_code == 410 and "was revoked by the author" in revoked.text
    assert HOSTILE not in revoked.text and "&lt;script&gt;" not in revoked.text
    assert anonymous_get(site, f"{named['url']}/versions/1/notebook").status_code == 410
    assert anonymous_get(site, brief["url"]).status_code == 200
    time.sleep(max(0.0, brief["expires"] - time.time()) + 0.5)
    expired = anonymous_get(site, brief["url"])
    assert expired.status_code == 410 and "has expired" in expired.text
    forged = anonymous_get(site, f"{SERVICE}/review/{'A' * 43}")
    assert forged.status_code == 404

    # A second version, compared with the first.
    second = call(
        ada, "POST", f"/entries/{entry_id}/versions", json=publication("Fit 2", "a = 2", "print(a)")
    )
    assert second.status_code == 201, second.text
    assert second.json()["number"] == 2
    compared = call(bob, "GET", f"/entries/{entry_id}/compare", params={"from": 1, "to": 2})
    assert compared.status_code == 200, compared.text
    assert compared.json()["cells"] == {
        "matched_by": "id",
        "added": [],
        "removed": [],
        "changed": ["c0"],
        "outputs_changed": [],
    }
    assert compared.json()["pinning"] == {}
    assert call(bob, "GET", f"/entries/{entry_id}").json()["latest"] == 2
    assert call(bob, "GET", f"/entries/{entry_id}/versions/1").json()["title"] == HOSTILE
    listed = call(bob, "GET", f"/entries/{entry_id}/versions").json()["versions"]
    assert [v["number"] for v in listed] == [1, 2]
    assert call(ada, "POST", f"/entries/{entry_id}", json={}).status_code == 405

    # The secrets of reviewer links stay out of the logs.
    log = hub.log_text()
    assert "/review/" in log
    for link in (brief, named, hidden):
        secret = link["url"].rsplit("/", 1)[1]
        assert secret not in log, [line for line in log.splitlines() if secret in line]
