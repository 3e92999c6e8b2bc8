"""Searching the gallery's list: by title, author, tag and environment, a page at a time.
Pure; the handler first keeps only the entries the viewer may read."""

from __future__ import annotations

from dataclasses import dataclass

from .store import EntryRow

PER_PAGE, MAX_PER_PAGE = 20, 100


@dataclass(frozen=True)
class EntryQuery:
    """What the list is filtered by; empty fields do not filter."""

    title: str = ""
    author: str = ""
    tag: str = ""
    environment: str = ""
    page: int = 1
    per_page: int = PER_PAGE


def query_from(arguments: dict[str, str]) -> EntryQuery:
    """The query in a request's arguments (``q`` or ``title``, ``author``, ``tag``,
    ``environment``, ``page``, ``per_page``), bounds enforced."""

    def number(name: str, default: int, largest: int) -> int:
        try:
            return max(1, min(int(arguments.get(name) or default), largest))
        except ValueError:
            raise ValueError(f"'{name}' must be a whole number") from None

    return EntryQuery(
        title=(arguments.get("q") or arguments.get("title") or "").strip()[:200],
        author=(arguments.get("author") or "").strip()[:200],
        tag=(arguments.get("tag") or "").strip().lower()[:40],
        environment=(arguments.get("environment") or "").strip()[:200],
        page=number("page", 1, 100_000),
        per_page=number("per_page", PER_PAGE, MAX_PER_PAGE),
    )


def matches(entry: EntryRow, query: EntryQuery, *, show_author: bool = True) -> bool:
    """Title: contains, any case; author, tag, environment: exactly."""
    if query.title and query.title.casefold() not in entry.title.casefold():
        return False
    if query.author and (not show_author or query.author != entry.author):
        return False
    if query.tag and query.tag not in entry.tags:
        return False
    return not query.environment or query.environment == entry.environment


def page_of(entries: list[EntryRow], query: EntryQuery) -> tuple[list[EntryRow], int]:
    """The entries of the query's page and how many matched in all."""
    matched = [entry for entry in entries if matches(entry, query)]
    start = (query.page - 1) * query.per_page
    return matched[start : start + query.per_page], len(matched)
