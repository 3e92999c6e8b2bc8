"""The gallery's pages escape what authors and users write: titles, abstracts, tags,
names, pinning, data paths, file names and error messages arrive as text, never as tags;
an anonymous page names no author; the hub's navigation bar links the gallery."""

from __future__ import annotations

import pytest

from kioskhub.hub.gallery.access import Viewer
from kioskhub.hub.gallery.pages import TEMPLATES, EntryUrls, templates
from kioskhub.hub.gallery.reproduce import GONE, REBUILT, BuildCheck
from kioskhub.hub.gallery.search import EntryQuery
from kioskhub.hub.gallery.seats_offer import SeatOffer
from kioskhub.hub.gallery.seats_store import Ticket
from kioskhub.hub.gallery.store import EntryRow
from tests.unit.test_hub_templates_escape import HOSTILE, a_user_running, hub_templates

ESCAPED = "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"


def hostile_entry() -> EntryRow:
    return EntryRow(1, HOSTILE, HOSTILE, HOSTILE, (HOSTILE,), HOSTILE, HOSTILE, 2, 0.0, 0.0)


def hostile_version(number: int) -> dict:
    return {
        "number": number,
        "author": HOSTILE,
        "created": 0.0,
        "title": HOSTILE,
        "abstract": HOSTILE,
        "manifest": {
            "notebook": {"name": "notebook.ipynb", "size": 1, "sha256": HOSTILE},
            "files": [{"name": HOSTILE, "size": 1, "sha256": HOSTILE}],
        },
        "pinning": {
            "environment": HOSTILE,
            "profile": HOSTILE,
            "source": HOSTILE,
            "kind": HOSTILE,
            "image": HOSTILE,
            "digest": HOSTILE,
            "content_hash": HOSTILE,
            "commit": HOSTILE,
            "repository": HOSTILE,
        },  # fmt: skip
        "claims": {
            "git_commit": HOSTILE,
            "kernel": HOSTILE,
            "python": HOSTILE,
            "data_reads": [{"path": HOSTILE, "size": 1, "mtime": 0.0, "sha256": HOSTILE}],
        },
    }


def render(name: str, **extra) -> str:
    return templates.get_template(name).render(
        prefix="/services/gallery/",
        viewer=Viewer(HOSTILE),
        entries=[hostile_entry()],
        query=EntryQuery(title=HOSTILE, author=HOSTILE, tag=HOSTILE, environment=HOSTILE),
        total=1,
        pages=1,
        previous=None,
        next=None,
        entry=hostile_entry(),
        version=hostile_version(2),
        versions=[hostile_version(1), hostile_version(2)],
        urls=EntryUrls("/p/", "/a/", "/r/"),
        status=410,
        message=HOSTILE,
        **({"reexecution": hostile_reexecution(), "badges": {1: HOSTILE, 2: HOSTILE}} | extra),
    )


def hostile_reexecution() -> dict:
    """A report whose badge and reasons quote what a notebook printed and raised."""
    return {
        "state": "done",
        "requested": 0.0,
        "finished": 0.0,
        "badge": f"failed (cell 1: ValueError: {HOSTILE})",
        "environment": {"name": HOSTILE, "changed": {"digest": {"from": HOSTILE, "to": "b"}}},
        "cells": [
            {"index": 0, "cell": HOSTILE, "result": "failed", "why": [f"ValueError: {HOSTILE}"]},
            {"index": 1, "cell": "b", "result": "differs", "why": [f"text: '' → '{HOSTILE}'"]},
        ],
    }


PAGES = sorted(p.name for p in TEMPLATES.glob("gallery_*.html") if p.name != "gallery_base.html")


@pytest.mark.parametrize("name", PAGES)
def test_hostile_strings_are_escaped(name):
    html = render(name, show_author=True)
    assert HOSTILE not in html
    assert html.count(ESCAPED) >= 1, html


def test_the_entry_page_shows_every_field_escaped_and_frames_the_render_sandboxed():
    html = render("gallery_entry.html", show_author=True)
    assert html.count(ESCAPED) >= 15
    assert '<iframe id="kh-gallery-render" sandbox title="The notebook, rendered" src="/r/v2">' in (
        html
    )
    assert "<script" not in html


def test_the_re_execution_report_is_shown_escaped_with_its_badges():
    html = render("gallery_entry.html", show_author=True)
    report = html.split('id="kh-gallery-reexecution"')[1].split("</div>")[0]
    assert f'<span class="tag" id="kh-gallery-badge">failed (cell 1: ValueError: {ESCAPED})' in (
        report
    )
    assert '<tr data-result="failed"><td><a href="#cell-0">1</a></td><td>failed</td>' in report
    assert report.count(ESCAPED) == 5 and "<script" not in html
    changed = f"pinning:\ndigest <code>{ESCAPED}</code> → <code>b</code>."
    assert changed in report
    queued = render("gallery_entry.html", show_author=True, reexecution={"state": "queued",
                    "requested": 0.0})  # fmt: skip
    assert 'Re-execution <span class="tag">queued</span> since 1970-01-01 00:00 UTC.' in queued
    assert '<meta http-equiv="refresh" content="10">' in queued
    assert 'id="kh-gallery-reexecute"' not in queued and 'http-equiv' not in html
    form = render("gallery_entry.html", show_author=True, can_reexecute=True, xsrf=HOSTILE)
    assert '<form method="post" action="/a/versions/2/reexecute" id="kh-gallery-reexecute">' in form
    assert f'<input type="hidden" name="_xsrf" value="{ESCAPED}">' in form
    listed = render("gallery_list.html", badges={1: "reproduced"})
    assert '<td class="kh-gallery-badge">reproduced</td>' in listed


def test_an_anonymous_page_names_no_author():
    html = render("gallery_entry.html", show_author=False)
    assert "Anonymous author" in html
    assert "by " + ESCAPED not in html
    # The versions table leaves out who published each version.
    versions = html.split('id="kh-gallery-versions"')[1].split("</table>")[0]
    assert ESCAPED not in versions.split("</td>")[2]


def test_the_navigation_bar_links_the_gallery_when_it_is_on():
    page = hub_templates().get_template("page.html")
    common = dict(user=a_user_running("", ""), static_url=lambda *a, **k: "", base_url="/hub/")
    link = '<a class="nav-link" href="/services/gallery/" id="kh-nav-gallery">Gallery</a>'
    assert link in page.render(kh_gallery_url="/services/gallery/", **common)
    assert "kh-nav-gallery" not in page.render(**common)


def test_the_open_button_posts_with_the_token_and_says_what_build_it_gets_escaped():
    panel = {
        "check": BuildCheck(REBUILT, HOSTILE, builder_link=True),
        "action": "/p/v2/open",
        "builder": "/services/environments/",
    }
    html = render("gallery_entry.html", show_author=True, reproduce=panel, xsrf=HOSTILE)
    form = html.split('<form id="kh-gallery-open" method="post" action="/p/v2/open">')[1]
    assert form.split("</form>")[0].count(ESCAPED) == 3  # token, environment, profile
    assert (
        f'<p id="kh-gallery-build" class="muted">{ESCAPED} <a href="/services/environments/"'
        in html
    )
    gone = {**panel, "check": BuildCheck(GONE, HOSTILE, builder_link=True)}
    html = render("gallery_entry.html", show_author=True, reproduce=gone, xsrf="t")
    assert "kh-gallery-open-unavailable" in html and 'id="kh-gallery-open"' not in html


def test_a_reviewer_links_page_says_why_it_cannot_be_opened_here():
    html = render("gallery_entry.html", show_author=False)
    assert '<button id="kh-gallery-open-unavailable" disabled>Open in my server</button>' in html
    assert "Reviewers without an account cannot run it here" in html


def test_a_reviewer_links_page_offers_a_seat_or_says_why_not_escaped():
    offer = SeatOffer(hours=24, action="/p/review/s/v2/seat")
    html = render("gallery_entry.html", show_author=False, seat=offer, xsrf=HOSTILE)
    form = html.split('<form id="kh-gallery-seat" method="post" action="/p/review/s/v2/seat">')[1]
    form = form.split("</form>")[0]
    assert '<button type="submit">Open in a temporary seat</button>' in form
    assert form.count(ESCAPED) == 3  # token, environment, profile
    assert "for 24 hours" in form and "Reviewers without an account" not in html
    full = SeatOffer(hours=24, problem=HOSTILE)
    html = render("gallery_entry.html", show_author=False, seat=full, xsrf="t")
    assert f'<span id="kh-gallery-seat-why" class="muted">{ESCAPED}</span>' in html
    assert 'id="kh-gallery-seat"' not in html


def test_the_hub_seat_page_escapes_the_entry_and_carries_the_hub_token():
    page = hub_templates().get_template("gallery_seat.html")
    common = dict(user=None, static_url=lambda *a, **k: "", base_url="/hub/", xsrf=HOSTILE)
    ticket = Ticket(1, 2, 3, HOSTILE, HOSTILE, 0.0, HOSTILE)
    html = page.render(ticket=ticket, hours=24, problem="", lab_account="", **common)
    assert f"To run <strong>{ESCAPED}</strong>, version 3" in html
    assert f'name="_xsrf" value="{ESCAPED}"' in html and HOSTILE not in html
    refused = page.render(ticket=None, hours=0, problem=HOSTILE, lab_account="", **common)
    assert f'role="alert">{ESCAPED}</div>' in refused and 'id="kh-seat-form"' not in refused
