"""The teachers' pages: ``/hub/workshops`` (their events and a create form) and
``/hub/workshops/<id>`` (the class view), and the hub settings of the Workshops part.

Both are JupyterHub page handlers for teachers only (others get 403, see
``WorkshopHandling``). Actions are HTML forms posted back to the page (with JupyterHub's
XSRF token), so they work without JavaScript; the REST API (``workshop_api``) does the same
for scripts. Templates escape everything: titles, display names and repositories come
from teachers and participants.

The class view's actions: start and stop all servers, push an update of the materials
(``workshop_materials``), broadcast a message (``workshop_broadcast``), collect work
(``workshop_collect``), and the join code's rotation and revocation.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jupyterhub.handlers.base import BaseHandler
from tornado import web

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.spawn_catalog import CatalogEnvironments

from . import workshop_collect, workshop_store
from .workshop_access import may_teach
from .workshop_api import EVENT_ID, workshop_api_routes
from .workshop_broadcast import MessageError, message_text
from .workshop_collect import CollectUnavailable
from .workshop_collect_api import audit_collection
from .workshop_environments import EventEnvironmentChoosing
from .workshop_events import EventRequestInvalid, event_request, iso_utc
from .workshop_materials import push_update
from .workshop_roles import teacher_load_roles
from .workshop_store import Message, events
from .workshop_teacher_requests import store_path

CLASS_ACTIONS = ("start", "stop", "rotate", "revoke", "end", "materials", "broadcast", "collect")
DONE = {
    "rotate": "A new join code was made; the old one no longer works.",
    "revoke": "The join code was revoked: no one can join until you make a new one.",
    "end": "The event has ended: no one can join, and its grace period has begun.",
    "start": "Starting the participants' servers:",
    "stop": "Stopping the participants' servers:",
    "materials": "The materials were pulled again into the running servers (edits are kept):",
    "broadcast": "Your message was sent; it appears in each participant's JupyterLab.",
    "collect": "The work was collected:",
}


def form_fields(handler: BaseHandler) -> dict[str, str]:
    return {
        name: handler.get_body_argument(name)
        for name in handler.request.body_arguments
        if name != "_xsrf"
    }


class WorkshopsPageHandler(EventEnvironmentChoosing, BaseHandler):
    """``/hub/workshops``: the teacher's events and the form that creates one."""

    @web.authenticated
    async def get(self) -> None:
        await self.show(self.teacher(), {}, {})

    @web.authenticated
    async def post(self) -> None:
        self.teacher()
        fields = form_fields(self)
        choices = await self.environment_choices()
        try:
            request = event_request(
                fields, self.site, time.time(), choices.extra_names(self.site), choices.refused
            )
        except EventRequestInvalid as error:
            self.set_status(400)
            await self.show(self.teacher(), fields, error.problems)
            return
        event = await self.create_event(request)
        self.redirect(f"{self.hub.base_url}workshops/{event.event_id}", status=303)

    async def show(self, user, fields: dict[str, str], problems: dict[str, str]) -> None:
        mine = await asyncio.to_thread(events, self.store_path, user.name)
        html = await self.render_template(
            "workshops.html",
            events=[self.event_model(event) for event in mine],
            site_environments=(await self.environment_choices()).offered,
            site_profiles=[p for p in self.site.profiles if not p.groups],
            settings=self.site.workshops,
            fields=fields,
            problems=problems,
        )
        self.finish(html)


class WorkshopPageHandler(EventEnvironmentChoosing, BaseHandler):
    """``/hub/workshops/<id>``: the class view and its actions."""

    @web.authenticated
    async def get(self, event_id: str) -> None:
        await self.show(await self.own_event(event_id), "", {})

    @web.authenticated
    async def post(self, event_id: str) -> None:
        event = await self.own_event(event_id)
        action = self.get_body_argument("action", "")
        if action not in CLASS_ACTIONS:
            raise web.HTTPError(400, "unknown action; choose one of %s", ", ".join(CLASS_ACTIONS))
        outcomes: dict[str, str] = {}
        if action == "rotate":
            event = await self.rotate_code(event)
        elif action == "revoke":
            event = await self.revoke_code(event)
        elif action == "end":
            event = await self.end_now(event)
        elif action == "broadcast":
            try:
                text = message_text({"text": self.get_body_argument("text", "")})
            except MessageError as error:
                await self.show(event, "", {}, problem=str(error))
                return
            message = Message(event.event_id, time.time(), self.current_user.name, text)
            await asyncio.to_thread(workshop_store.post_message, store_path(self.site), message)
        else:
            chosen = await self.participants_named(event, None)
            if action == "start":
                outcomes = await self.start_servers(event, chosen)
            elif action == "stop":
                outcomes = await self.stop_servers(chosen)
            elif action == "materials":
                users = [user for p in chosen if (user := self.find_user(p.username))]
                outcomes = await push_update(users, event, self.site.workshops.materials_folder)
            else:
                try:
                    outcomes = await self.collect(event, chosen)
                except CollectUnavailable as error:
                    await self.show(event, "", {}, problem=str(error))
                    return
        await self.show(event, DONE[action], outcomes)

    async def collect(self, event, chosen) -> dict[str, str]:
        """Collect now; per participant what was kept (or why not), and the archive."""
        path, manifest = await asyncio.to_thread(
            workshop_collect.collect_with_manifest, self.site, event, chosen
        )
        await asyncio.to_thread(
            audit_collection, self.site, self.current_user.name, event.event_id, manifest, path.name
        )
        outcomes = {
            line["username"]: line.get("error") or f"{line['files']} files"
            for line in manifest["participants"]
        }
        return {**outcomes, "archive": path.name}

    async def show(self, event, done: str, outcomes: dict[str, str], problem: str = "") -> None:
        html = await self.render_template(
            "workshop.html",
            event=self.event_model(event),
            rows=await self.class_rows(event),
            warm=await self.warm_seats(event),
            closes=iso_utc(event.closes),
            done=done,
            outcomes=outcomes,
            problem=problem,
            collections=await asyncio.to_thread(
                workshop_collect.collections, self.site.hub.state_dir, event.event_id
            ),
        )
        self.finish(html)


def teacher_flag(site: Site):
    """``kh_workshop_teacher`` in every page's template: whether to link the Workshops page."""

    def is_teacher(user) -> bool:
        if user is None or getattr(user, "kind", "user") != "user":
            return False
        return may_teach(site, [group.name for group in user.groups], bool(user.admin))

    return is_teacher


def workshop_hub_settings(site: Site, catalog: CatalogEnvironments | None = None) -> dict[str, Any]:
    """The Workshops pages and API, the navigation link, and the teachers' roles;
    ``catalog``: the hub's reader of the build catalog (None when builds are off)."""
    if not site.workshops.enabled:
        return {}
    options = {"site": site, "catalog": catalog}
    return {
        "JupyterHub": {
            "extra_handlers": [
                (r"/workshops", WorkshopsPageHandler, options),
                (rf"/workshops/{EVENT_ID}", WorkshopPageHandler, options),
                *workshop_api_routes(options),
            ],
            "template_vars": {"kh_workshop_teacher": teacher_flag(site)},
            "load_roles": teacher_load_roles(site.hub.state_dir),
        }
    }
