"""Which environments a workshop event may run on: those every participant may launch.

A temporary participant (``ws-<event>-<nnn>``) owns nothing and belongs to no group but
the event's own (``workshop-<id>``); the spawner checks each start against what that
participant may launch (``spawn_catalog.CatalogEnvironments``: the config's environments,
and the catalog's with a finished build that are shared with everyone or with one of the
participant's groups). A teacher may therefore pick:

- a config environment open to everyone (no ``groups``);
- a catalog environment with a finished build that a participant may launch: shared with
  everyone (visibility ``site``), or, once the event exists, with its group.

An environment that only the teacher (its owner) or the teacher's groups may launch is
refused with what to do, rather than accepted and failing at every participant's start.
``event_environments`` is the rule (pure); ``EventEnvironmentChoosing`` reads the catalog
in a worker thread for the teachers' page and API handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.spawn_catalog import CatalogEnvironments
from kioskhub.spawner.launch_spec import allowed

from .workshop_class import WorkshopHandling
from .workshop_store import Event

ANY_PARTICIPANT = ""
"""The catalog reader's user name for "a participant": one who owns no environment, so
that only what is shared counts (every participant may launch it, not one seat)."""


@dataclass(frozen=True)
class EventEnvironments:
    """What a teacher may pick for an event, and why the others they see are refused."""

    offered: tuple[Environment, ...]
    refused: dict[str, str] = field(default_factory=dict)
    """Name → message, for the environments the teacher may launch but a participant not."""

    def extra_names(self, site: Site) -> tuple[str, ...]:
        """The offered names beyond the config's open to everyone (which ``event_request``
        accepts by itself): its ``extra_environments``."""
        open_to_all = {e.name for e in site.environments if not e.groups}
        return tuple(e.name for e in self.offered if e.name not in open_to_all)


def event_environments(
    site: Site,
    participant_may_launch: Iterable[Environment],
    participant_groups: Iterable[str],
    teacher_may_launch: Iterable[Environment],
    teacher_groups: Iterable[str],
) -> EventEnvironments:
    """Pure: what a participant in ``participant_groups`` may launch, as the spawner
    decides (``launch_spec.allowed``); for each environment the teacher may launch beyond
    those, why it is refused and what to do. ``*_may_launch``: the catalog reader's
    answers for a participant and for the teacher."""
    offered = tuple(allowed(participant_may_launch, participant_groups))
    names = {environment.name for environment in offered}
    configured = {environment.name for environment in site.environments}
    refused = {}
    for environment in allowed(teacher_may_launch, teacher_groups):
        if environment.name in names:
            continue
        if environment.name in configured:
            fix = "ask the site admin to open it to everyone (remove its groups in the site config)"
        else:
            fix = (
                "share it with everyone (visibility 'site', which a site admin sets on the "
                "Environments page)"
            )
        refused[environment.name] = (
            f"{environment.name!r} is launched only by you or your groups, not by the "
            f"event's participants (they belong to no group but the event's): {fix}, "
            "or choose one of " + ", ".join(e.name for e in offered)
        )
    return EventEnvironments(offered, refused)


class EventEnvironmentChoosing(WorkshopHandling):
    """``WorkshopHandling`` that also knows the build catalog (``catalog``: the hub's
    ``CatalogEnvironments``, None when builds are off)."""

    def initialize(self, site: Site, catalog: CatalogEnvironments | None = None) -> None:
        super().initialize(site)
        self.catalog = catalog

    async def environment_choices(self, event: Event | None = None) -> EventEnvironments:
        """The signed-in teacher's choices for ``event`` (None: a new event, whose group
        does not exist yet), the catalog read in a worker thread."""
        user = self.teacher()
        participant_groups = (event.group,) if event is not None else ()
        teacher_groups = tuple(group.name for group in user.groups)
        participant = teacher = self.site.environments
        if self.catalog is not None:

            def read() -> tuple[tuple[Environment, ...], tuple[Environment, ...]]:
                return (
                    self.catalog.read(self.site, ANY_PARTICIPANT, participant_groups),
                    self.catalog.read(self.site, user.name, teacher_groups),
                )

            participant, teacher = await asyncio.to_thread(read)
        return event_environments(
            self.site, participant, participant_groups, teacher, teacher_groups
        )


def participants_may_launch(
    site: Site, catalog: CatalogEnvironments, event: Event
) -> tuple[Environment, ...]:
    """What ``event``'s participants may launch, as the spawner decides (blocking: reads
    the catalog)."""
    groups = (event.group,)
    return tuple(allowed(catalog.read(site, ANY_PARTICIPANT, groups), groups))
