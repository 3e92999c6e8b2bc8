"""Broadcast: a teacher's message that appears inside every participant's JupyterLab.

Hub API handlers (``JupyterHub.extra_handlers``):

- ``POST /hub/api/workshops/<event>/messages`` with ``{"text": "..."}`` (1–1000
  characters): the event's teacher or an admin (``workshop_teacher_requests``) posts a
  message, stored with its sender and time; ``GET`` on the same path lists the event's
  messages for them.
- ``GET /hub/api/workshops/messages?since=<unix time>``: the messages, newer than
  ``since``, of every event the caller takes part in. A server's own API token is enough
  (it holds ``users:activity`` on its user, the scope this asks for): the server extension
  ``kioskhub.extensions.workshop_notice`` asks with it and JupyterLab shows what comes.

Messages are plain text; everyone who shows one escapes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from kioskhub.hub.schema.site import Site

from . import workshop_store
from .workshop_store import Message
from .workshop_teacher_requests import (
    EVENT_ID_PATTERN,
    holds_own_scope,
    managed_event,
    store_path,
)

MAX_MESSAGE_CHARS = 1000
PARTICIPANT_SCOPE = "users:activity"
"""What a token needs, on its own user, to read that user's messages: a server's has it."""


class MessageError(ValueError):
    """A message that cannot be posted; the text says why and what to write."""


def message_text(body: Any) -> str:
    """The text of a POST body ``{"text": "..."}``, stripped; MessageError if it is not
    1–1000 characters of text."""
    if not isinstance(body, dict) or set(body) - {"text"}:
        raise MessageError('Send a JSON object with one key: {"text": "your message"}.')
    text = body.get("text")
    if not isinstance(text, str):
        raise MessageError('"text" must be a string: the message to show.')
    text = text.strip()
    if not text:
        raise MessageError("The message is empty; write something to broadcast.")
    if len(text) > MAX_MESSAGE_CHARS:
        raise MessageError(
            f"The message has {len(text)} characters; at most {MAX_MESSAGE_CHARS} are allowed."
        )
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise MessageError("The message holds control characters; write plain text.")
    return text


def since_time(text: str | None) -> float:
    """``since`` as Unix seconds (0 when absent); MessageError for anything else."""
    if text is None or text == "":
        return 0.0
    try:
        since = float(text)
    except ValueError:
        since = -1.0
    if not 0 <= since < 1e11:
        raise MessageError(f"since={text[:40]!r}: give a time in Unix seconds, e.g. 0.")
    return since


def message_as_dict(message: Message, title: str = "") -> dict[str, Any]:
    return {
        "event_id": message.event_id,
        "event_title": title,
        "sent": message.sent,
        "sender": message.sender,
        "text": message.text,
    }


def participant_messages(path, username: str, since: float) -> list[dict[str, Any]]:
    """The messages newer than ``since`` of every event ``username`` takes part in, oldest
    first. Blocking: call it in a thread."""
    found = []
    for event in workshop_store.events_of_participant(path, username):
        for message in workshop_store.messages(path, event.event_id, since):
            found.append(message_as_dict(message, event.title))
    return sorted(found, key=lambda m: m["sent"])


class EventMessagesHandler(APIHandler):
    """A teacher posts a message to an event, or lists what was posted."""

    def initialize(self, site: Site) -> None:
        self.site = site

    async def get(self, event_id: str) -> None:
        event = await managed_event(self, self.site, event_id)
        found = await asyncio.to_thread(workshop_store.messages, store_path(self.site), event_id)
        self.finish({"messages": [message_as_dict(m, event.title) for m in found]})

    async def post(self, event_id: str) -> None:
        event = await managed_event(self, self.site, event_id)
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            body = None
        try:
            text = message_text(body)
        except MessageError as error:
            raise web.HTTPError(400, str(error)) from None
        message = Message(event.event_id, time.time(), self.current_user.name, text)
        await asyncio.to_thread(workshop_store.post_message, store_path(self.site), message)
        self.log.info("Workshop %s: %s broadcast a message", event.event_id, message.sender)
        self.set_status(201)
        self.finish(message_as_dict(message, event.title))


class MyMessagesHandler(APIHandler):
    """A participant's messages (their server's extension asks with the server's token)."""

    def initialize(self, site: Site) -> None:
        self.site = site

    async def get(self) -> None:
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        if not holds_own_scope(self, PARTICIPANT_SCOPE):
            raise web.HTTPError(
                403, f"These credentials cannot read your messages (scope {PARTICIPANT_SCOPE})."
            )
        try:
            since = since_time(self.get_argument("since", None))
        except MessageError as error:
            raise web.HTTPError(400, str(error)) from None
        found = await asyncio.to_thread(
            participant_messages, store_path(self.site), self.current_user.name, since
        )
        self.finish({"messages": found, "now": time.time()})


def broadcast_hub_settings(site: Site) -> dict[str, Any]:
    """The routes of broadcast, under the hub's prefix (none while workshops are off)."""
    if not site.workshops.enabled:
        return {}
    options = {"site": site}
    return {
        "JupyterHub": {
            "extra_handlers": [
                (r"/api/workshops/messages", MyMessagesHandler, options),
                (rf"/api/workshops/({EVENT_ID_PATTERN})/messages", EventMessagesHandler, options),
            ]
        }
    }
