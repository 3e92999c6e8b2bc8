"""A teacher's event request, from the Workshops form or the REST API, checked (pure).

``event_request(data, site, now)`` returns an ``EventRequest`` or raises
``EventRequestInvalid`` whose ``problems`` map each field to a message saying what was
wrong and what to do. The materials repository follows the builder's source rules
(``image_builder.source_safety``): https:// or git:// URLs on the hosts the site allows
(``builder.allowed_hosts``), absolute paths only where ``builder.allow_local_paths``.

Times are ISO 8601 (``2026-12-01T09:00``; without an offset they are UTC) or Unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.source_safety import UnsafeSource, check_ref, check_repository_url

from .workshop_store import Event

MATERIALS_SCHEMES = ("https", "git")
"""Schemes a materials repository may use; the participants' servers pull it."""
MAX_TITLE = 200
FIELDS = (
    "title",
    "environment",
    "profile",
    "materials_repo",
    "materials_ref",
    "seats",
    "start",
    "end",
    "grace_minutes",
)

OPEN_ENVIRONMENT = "an environment of this site open to every user"
OPEN_PROFILE = "a resource profile of this site open to every user"


class EventRequestInvalid(ValueError):
    """Fields of an event request that cannot be used; ``problems``: field → message."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{name}: {text}" for name, text in self.problems.items()))


@dataclass(frozen=True)
class EventRequest:
    """What a teacher asked for, checked: the fields of an Event that they choose."""

    title: str
    environment: str
    profile: str
    materials_repo: str
    materials_ref: str
    seats: int
    start: float
    end: float
    grace_seconds: float


def event_request(
    data: Mapping[str, Any],
    site: Site,
    now: float | None,
    extra_environments: tuple[str, ...] = (),
    refused_environments: Mapping[str, str] | None = None,
) -> EventRequest:
    """``data`` (form fields or a JSON object) as an EventRequest under the site's rules.

    ``extra_environments``: names beyond the site config's that the teacher may choose
    (the build catalog's); ``refused_environments``: name → why not, for those the teacher
    sees but participants could not launch (``workshop_environments``). An event may start
    before ``now`` (a class already running) but must end after it; ``now`` None skips
    that check.
    """
    settings = site.workshops
    problems: dict[str, str] = {}
    unknown = sorted(set(data) - set(FIELDS) - {"_xsrf"})
    if unknown:
        problems["fields"] = (
            f"unknown field {', '.join(unknown)}; an event has: {', '.join(FIELDS)}"
        )

    def check(name: str, parse):
        try:
            return parse(data.get(name))
        except ValueError as error:
            problems[name] = str(error)
            return None

    title = check("title", parse_title)
    # Participants are in the event's group only: a choice kept for some groups would
    # refuse their servers, so only the choices open to everyone (and the catalog's that
    # every participant may launch, given as extra) are offered.
    environments = tuple(e.name for e in site.environments if not e.groups) + tuple(
        extra_environments
    )
    refused = refused_environments or {}
    environment = check(
        "environment",
        lambda v: one_of(v, environments, OPEN_ENVIRONMENT, refused.get(str(v or "").strip())),
    )
    profiles = tuple(p.name for p in site.profiles if not p.groups)
    profile = check("profile", lambda v: one_of(v, profiles, OPEN_PROFILE))
    repo = check("materials_repo", lambda v: parse_materials_repo(v, site))
    ref = check("materials_ref", parse_materials_ref)
    seats = check("seats", lambda v: parse_count(v, 1, settings.max_seats, "seats"))
    start = check("start", lambda v: parse_time(v, "start"))
    end = check("end", lambda v: parse_time(v, "end"))
    grace = check(
        "grace_minutes",
        lambda v: parse_count(v, 0, 7 * 24 * 60, "grace minutes", default=settings.grace_minutes),
    )
    if start is not None and end is not None:
        if end <= start:
            problems["end"] = "the end must be after the start; give a later end"
        elif now is not None and end <= now:
            problems["end"] = "the end has passed; give an end in the future"
        elif end - start > settings.max_days * 86400:
            problems["end"] = (
                f"an event may last at most {settings.max_days} days on this site; "
                "give an earlier end or split the event"
            )
    if problems:
        raise EventRequestInvalid(problems)
    return EventRequest(title, environment, profile, repo, ref, seats, start, end, grace * 60.0)


def event_changes(
    data: Mapping[str, Any],
    event: Event,
    site: Site,
    now: float,
    extra_environments: tuple[str, ...] = (),
    refused_environments: Mapping[str, str] | None = None,
) -> EventRequest:
    """``event`` with the fields of ``data`` changed, checked as a whole (for PATCH). Its
    environment stays valid while unchanged; a changed one follows ``event_request``'s
    rule; a changed end must lie after ``now``."""
    current = {
        "title": event.title,
        "environment": event.environment,
        "profile": event.profile,
        "materials_repo": event.materials_repo,
        "materials_ref": event.materials_ref,
        "seats": event.seats,
        "start": event.start,
        "end": event.end,
        "grace_minutes": event.grace_seconds / 60,
    }
    if "environment" not in data:
        extra_environments = (*extra_environments, event.environment)
    return event_request(
        {**current, **data},
        site,
        now if "end" in data else None,
        extra_environments,
        refused_environments,
    )


def parse_title(value: Any) -> str:
    text = " ".join(str(value or "").split())
    if not text:
        raise ValueError("give the event a title, such as 'Python for physicists'")
    if len(text) > MAX_TITLE:
        raise ValueError(f"the title has {len(text)} characters; shorten it to {MAX_TITLE}")
    return text


def one_of(value: Any, names: tuple[str, ...], what: str, refusal: str | None = None) -> str:
    """``value`` if among ``names``; else ``refusal`` (why this one is not) or a list."""
    name = str(value or "").strip()
    if refusal and name not in names:
        raise ValueError(refusal)
    if not name:
        raise ValueError(f"choose {what}: one of {', '.join(names)}")
    if name not in names:
        raise ValueError(f"{name!r} is not {what}; choose one of {', '.join(names)}")
    return name


def parse_materials_repo(value: Any, site: Site) -> str:
    url = str(value or "").strip()
    if not url:
        raise ValueError(
            "give the git repository of the materials, such as https://github.com/group/course.git"
        )
    try:
        return check_repository_url(
            url,
            allowed_schemes=MATERIALS_SCHEMES,
            allowed_hosts=site.builder.allowed_hosts,
            allow_local_paths=site.builder.allow_local_paths,
        ).url
    except UnsafeSource as error:
        raise ValueError(str(error)) from None


def parse_materials_ref(value: Any) -> str:
    """A branch, tag or commit; 'main' when none is given (nbgitpuller's default branch)."""
    text = str(value or "").strip()
    if not text:
        return "main"
    try:
        return check_ref(text)
    except UnsafeSource as error:
        raise ValueError(str(error)) from None


def parse_count(value: Any, low: int, high: int, what: str, default: int | None = None) -> int:
    if (value is None or value == "") and default is not None:
        return default
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"give the {what} as a whole number from {low} to {high}")
    try:
        number = int(str(value).strip()) if not isinstance(value, int | float) else int(value)
    except ValueError:
        shown = str(value)[:40]
        raise ValueError(
            f"{shown!r} is not a number; give the {what} from {low} to {high}"
        ) from None
    if not low <= number <= high:
        raise ValueError(f"{number} is outside {low}–{high}; give the {what} from {low} to {high}")
    return number


def parse_time(value: Any, what: str) -> float:
    """Unix seconds from ISO 8601 text (UTC unless it gives an offset) or a number."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value or "").strip()
    if not text:
        raise ValueError(f"give the {what} time, such as 2026-12-01T09:00 (UTC)")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text[:40]!r} is not a time; write the {what} as YYYY-MM-DDTHH:MM (UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def iso_utc(seconds: float) -> str:
    """A stored time as the API and the form show it: ``2026-12-01T09:00:00Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
