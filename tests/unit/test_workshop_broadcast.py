"""Broadcast messages: what a teacher may post, what a participant reads, what the server
extension makes of the hub's answer."""

from __future__ import annotations

import json

import pytest

from kioskhub.extensions.workshop_notice import (
    PACKAGE_JSON,
    REMOTE_ENTRY,
    hub_answer,
    hub_messages_url,
    requested_since,
)
from kioskhub.hub import workshop_store
from kioskhub.hub.workshop_broadcast import (
    MessageError,
    broadcast_hub_settings,
    message_text,
    participant_messages,
    since_time,
)
from kioskhub.hub.workshop_store import Event, Message
from tests.unit.test_hub_settings import small_site


def test_a_message_is_stripped_text():
    assert message_text({"text": "  Break until 11:00\n"}) == "Break until 11:00"
    assert message_text({"text": "x" * 1000}) == "x" * 1000
    assert message_text({"text": "<b>not bold</b>"}) == "<b>not bold</b>"  # escaped when shown


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"text": ""}, "The message is empty"),
        ({"text": "   \n"}, "The message is empty"),
        ({"text": "x" * 1001}, "has 1001 characters; at most 1000"),
        ({"text": 5}, '"text" must be a string'),
        ({"text": "a\x1b[31mred"}, "control characters"),
        ({"text": "hi", "html": "<b>"}, "one key"),
        ("hello", "one key"),
        (None, "one key"),
    ],
)
def test_bad_messages_are_refused_with_a_reason(body, says):
    with pytest.raises(MessageError, match=says):
        message_text(body)


def test_since_is_a_time():
    assert since_time(None) == 0.0
    assert since_time("1780000000.5") == 1780000000.5
    for bad in ("yesterday", "-1", "nan", "1e300"):
        with pytest.raises(MessageError, match="Unix seconds"):
            since_time(bad)


def event(event_id: str, title: str) -> Event:
    return Event(event_id, title, "tess", "default", "small", "", "", 5, 0, 10, 0, "", 0)


def test_a_participant_reads_the_messages_of_their_events_only(tmp_path):
    path = workshop_store.database(tmp_path)
    workshop_store.create_event(path, event("aaa222", "Python <101>"))
    workshop_store.create_event(path, event("bbb333", "Other class"))
    workshop_store.take_seat(path, "aaa222", "Ada", 1, username="ada")
    workshop_store.take_seat(path, "bbb333", "Bob", 1, username="bob")
    workshop_store.post_message(path, Message("aaa222", 100.0, "tess", "first"))
    workshop_store.post_message(path, Message("bbb333", 150.0, "tess", "not for ada"))
    workshop_store.post_message(path, Message("aaa222", 200.0, "tess", "second"))
    assert [m["text"] for m in participant_messages(path, "ada", 0)] == ["first", "second"]
    assert participant_messages(path, "ada", 100.0) == [
        {
            "event_id": "aaa222",
            "event_title": "Python <101>",
            "sent": 200.0,
            "sender": "tess",
            "text": "second",
        }
    ]
    assert participant_messages(path, "carl", 0) == []


def test_routes_exist_only_with_workshops_on(tmp_path):
    assert broadcast_hub_settings(small_site(tmp_path)) == {}
    site = small_site(tmp_path, workshops={"enabled": True})
    routes = [route[0] for route in broadcast_hub_settings(site)["JupyterHub"]["extra_handlers"]]
    assert routes == [
        "/api/workshops/messages",
        "/api/workshops/([a-z0-9]{1,32})/messages",
    ]


def test_the_extension_asks_the_hub_with_a_time():
    assert (
        hub_messages_url("http://127.0.0.1:8081/hub/api/", 12.5)
        == "http://127.0.0.1:8081/hub/api/workshops/messages?since=12.5"
    )
    assert requested_since("17.25") == 17.25
    assert requested_since("x&since=0") == 0.0
    assert requested_since(None) == 0.0


def test_the_extension_passes_messages_as_text_fields():
    body = json.dumps(
        {"messages": [{"event_title": "T", "sender": "tess", "sent": 3, "text": "<img>"}]}
    ).encode()
    assert hub_answer(200, body) == {
        "enabled": True,
        "messages": [{"event_title": "T", "sender": "tess", "sent": 3.0, "text": "<img>"}],
        "poll_seconds": 15,
    }
    assert hub_answer(404, b"") == {"enabled": False, "messages": []}
    assert hub_answer(403, b"") == {"enabled": False, "messages": []}
    assert hub_answer(500, b"")["error"] == "the hub answered 500"


def test_the_lab_plugin_shows_text_never_html():
    assert PACKAGE_JSON["name"] == "kioskhub-workshop-notice"
    assert "innerHTML" not in REMOTE_ENTRY
    assert "textContent = text" in REMOTE_ENTRY
    assert 'document.visibilityState !== "visible"' in REMOTE_ENTRY
