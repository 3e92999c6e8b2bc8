"""The teachers' REST API: ``/hub/api/workshops`` (JupyterHub ``extra_handlers``).

- ``GET /workshops``: the teacher's events (an admin's: every event); ``POST``: create one.
- ``GET /workshops/<id>``: the event with its participants and their servers, and its
  pre-warmed seats not taken yet (``prewarmed``: ``seats``, ``running``);
  ``PATCH``: change its fields; ``DELETE``: end it now (its code stops working).
- ``POST /workshops/<id>/code``: a new join code; ``DELETE``: revoke the code.
- ``POST /workshops/<id>/servers``: start the participants' servers with the event's
  environment and profile; ``DELETE``: stop them. A body ``{"users": [...]}`` names some
  participants; a name outside the event is refused (403).

Who may call each: a teacher (``workshops.teacher_groups`` or an admin), on their own
events only (``WorkshopHandling``). Bad fields get 400 with ``problems``: field → message.
An event's environment is one every participant may launch (``workshop_environments``).
"""

from __future__ import annotations

import asyncio
import json
import time

from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .workshop_environments import EventEnvironmentChoosing
from .workshop_events import EventRequestInvalid, event_changes, event_request
from .workshop_store import events

EVENT_ID = r"([a-z0-9]{1,32})"


class WorkshopAPIHandling(EventEnvironmentChoosing):
    def json_object(self) -> dict:
        body = self.get_json_body()
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the body must be a JSON object")
        return body

    def named_users(self) -> list[str] | None:
        names = self.json_object().get("users")
        if names is not None and not (
            isinstance(names, list) and all(isinstance(n, str) for n in names)
        ):
            raise web.HTTPError(400, "users: give a list of participants' usernames")
        return names

    def refuse_fields(self, error: EventRequestInvalid) -> None:
        self.set_status(400)
        self.finish(json.dumps({"status": 400, "message": str(error), "problems": error.problems}))


class WorkshopsAPIHandler(WorkshopAPIHandling, APIHandler):
    async def get(self) -> None:
        user = self.teacher()
        mine = await asyncio.to_thread(events, self.store_path, None if user.admin else user.name)
        self.finish(json.dumps({"events": [self.event_model(event) for event in mine]}))

    async def post(self) -> None:
        self.teacher()
        body = self.json_object()
        choices = await self.environment_choices()
        try:
            request = event_request(
                body, self.site, time.time(), choices.extra_names(self.site), choices.refused
            )
        except EventRequestInvalid as error:
            self.refuse_fields(error)
            return
        event = await self.create_event(request)
        self.set_status(201)
        self.finish(json.dumps(self.event_model(event)))


class WorkshopAPIHandler(WorkshopAPIHandling, APIHandler):
    async def get(self, event_id: str) -> None:
        event = await self.own_event(event_id)
        model = self.event_model(event)
        model["participants"] = await self.class_rows(event)
        model["prewarmed"] = await self.warm_seats(event)
        self.finish(json.dumps(model))

    async def patch(self, event_id: str) -> None:
        event = await self.own_event(event_id)
        body = self.json_object()
        choices = await self.environment_choices(event)
        try:
            request = event_changes(
                body,
                event,
                self.site,
                time.time(),
                choices.extra_names(self.site),
                choices.refused,
            )
        except EventRequestInvalid as error:
            self.refuse_fields(error)
            return
        self.finish(json.dumps(self.event_model(await self.change_event(event, request))))

    async def delete(self, event_id: str) -> None:
        event = await self.own_event(event_id)
        self.finish(json.dumps(self.event_model(await self.end_now(event))))


class WorkshopCodeAPIHandler(WorkshopAPIHandling, APIHandler):
    async def post(self, event_id: str) -> None:
        event = await self.rotate_code(await self.own_event(event_id))
        self.finish(json.dumps({"code": event.code, "join_url": self.join_url(event)}))

    async def delete(self, event_id: str) -> None:
        await self.revoke_code(await self.own_event(event_id))
        self.finish(json.dumps({"code": "", "join_url": ""}))


class WorkshopServersAPIHandler(WorkshopAPIHandling, APIHandler):
    async def post(self, event_id: str) -> None:
        event = await self.own_event(event_id)
        chosen = await self.participants_named(event, self.named_users())
        self.set_status(202)
        self.finish(json.dumps({"servers": await self.start_servers(event, chosen)}))

    async def delete(self, event_id: str) -> None:
        event = await self.own_event(event_id)
        chosen = await self.participants_named(event, self.named_users())
        self.set_status(202)
        self.finish(json.dumps({"servers": await self.stop_servers(chosen)}))


def workshop_api_routes(options: dict) -> list[tuple]:
    return [
        (r"/api/workshops", WorkshopsAPIHandler, options),
        (rf"/api/workshops/{EVENT_ID}", WorkshopAPIHandler, options),
        (rf"/api/workshops/{EVENT_ID}/code", WorkshopCodeAPIHandler, options),
        (rf"/api/workshops/{EVENT_ID}/servers", WorkshopServersAPIHandler, options),
    ]
