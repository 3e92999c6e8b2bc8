"""A user's lab identity: the UID, GID and supplementary groups their server runs as.

With ``auth.identity.source`` ``claims`` or ``nss`` a server runs as the identity the lab's
directory gives the user, so that the central data's own permissions decide what they read.
``identity_from_claims`` reads the provider's claims (``auth_state["oauth_user"]``, or what
an admin set there through the REST API); ``identity_from_nss`` asks this machine's name
service by the hub username (blocking: NSS may ask LDAP or SSSD, so call it in a thread).

Both refuse with an ``IdentityError`` that says what is wrong and what to do: a claim that
is missing or not an integer, a UID or primary GID below ``min_id`` (root and the system
accounts), an id in a range KioskHub reserves for builds and environment groups, a user the
name service does not know. Supplementary groups below ``min_id`` or in a reserved range
are left out, never granted: they are the machine's own groups (``disk``, ``docker``, ...).
"""

from __future__ import annotations

import asyncio
import os
import pwd
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kioskhub.hub.schema.auth import IdentitySettings
from kioskhub.hub.schema.builder import BuilderSettings, environment_gids
from kioskhub.hub.schema.gallery import SEAT_PREFIX
from kioskhub.hub.schema.site import Site
from kioskhub.hub.schema.workshops import PARTICIPANT_PREFIX

from .launch_spec import ChoiceError

CLAIMS_KEY = "oauth_user"
"""Where oauthenticator keeps the provider's userinfo in the auth state."""

MAX_ID = 2**32 - 2
"""The largest valid uid/gid (2**32 - 1 is (uid_t) -1, "no change")."""


class IdentityError(ChoiceError):
    """The user has no valid lab identity; the message says why and whom to ask."""


@dataclass(frozen=True)
class LabIdentity:
    """Whom a user's server runs as: uid, primary gid, supplementary gids, account name."""

    uid: int
    gid: int
    supplementary_gids: tuple[int, ...]
    name: str


async def resolve_identity(
    site: Site, username: str, auth_state: Callable[[], Awaitable[dict | None]]
) -> LabIdentity | None:
    """The identity ``username``'s server runs as under ``auth.identity``; None for the
    default ``accounts`` (a kh- account). ``auth_state`` is awaited only for claims.

    Temporary workshop participants (``ws-…``) and gallery reviewer seats (``rv-…``) have
    no lab identity: they always run as a kh- account of their own, whatever the source.
    """
    if username.startswith((PARTICIPANT_PREFIX, SEAT_PREFIX)):
        return None
    settings = site.auth.identity
    reserved = reserved_ranges(site.builder)
    if settings.source == "nss":
        return await asyncio.to_thread(identity_from_nss, username, settings, reserved)
    if settings.source == "claims":
        state = await auth_state()
        claims = state.get(CLAIMS_KEY) if isinstance(state, dict) else None
        return identity_from_claims(claims, settings, username, reserved)
    return None


def identity_from_claims(
    claims: Mapping[str, Any] | None,
    settings: IdentitySettings,
    username: str,
    reserved: Sequence[range] = (),
) -> LabIdentity:
    """The identity the provider's ``claims`` give ``username``; IdentityError if none."""
    if not isinstance(claims, Mapping):
        raise IdentityError(
            f"Your sign-in carries no lab identity (no {settings.uid_claim!r} and "
            f"{settings.gid_claim!r} claims), so no server can start for you. Sign out and "
            "in again; if it persists, ask the site's admins to have your account's "
            "uid and gid released to this site."
        )
    uid = _claimed_id(claims, settings.uid_claim, "uid")
    gid = _claimed_id(claims, settings.gid_claim, "gid")
    supplementary: list[int] = []
    if settings.gids_claim and settings.gids_claim in claims:
        listed = claims[settings.gids_claim]
        if not isinstance(listed, list):
            raise IdentityError(
                f"The claim {settings.gids_claim!r} of your sign-in must be a list of group "
                f"numbers, got {_shown(listed)}; ask the site's admins to fix the claim."
            )
        what = f"an entry of the claim {settings.gids_claim!r}"
        supplementary = [_integer(value, what) for value in listed]
    return checked_identity(uid, gid, supplementary, username, settings.min_id, reserved)


def identity_from_nss(
    username: str, settings: IdentitySettings, reserved: Sequence[range] = ()
) -> LabIdentity:
    """The identity of ``username`` in this machine's name service. Blocking (NSS may ask
    LDAP or SSSD): call it in a thread."""
    try:
        entry = pwd.getpwnam(username)
    except KeyError:
        raise IdentityError(
            f"This machine's name service (passwd, LDAP, SSSD) has no account {username!r}, "
            "so no server can start for you; ask the site's admins to add you to the "
            "directory."
        ) from None
    groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
    return checked_identity(
        entry.pw_uid, entry.pw_gid, groups, entry.pw_name, settings.min_id, reserved
    )


def checked_identity(
    uid: int,
    gid: int,
    supplementary: Sequence[int],
    name: str,
    min_id: int,
    reserved: Sequence[range] = (),
) -> LabIdentity:
    """``LabIdentity`` after the rules: uid and gid at least ``min_id`` and outside
    ``reserved``; supplementary gids that break them are left out; duplicates removed."""
    for kind, value in (("uid", uid), ("gid", gid)):
        if value < min_id:
            raise IdentityError(
                f"Your lab identity has {kind} {value}, below {min_id}: ids below that are "
                "root and the machine's system accounts, which a server never runs as. "
                "Ask the site's admins to check your account in the directory."
            )
        if value > MAX_ID:
            raise IdentityError(
                f"Your lab identity has {kind} {value}, above the largest id {MAX_ID}; "
                "ask the site's admins to check your account in the directory."
            )
        if any(value in r for r in reserved):
            raise IdentityError(
                f"Your lab identity has {kind} {value}, which KioskHub reserves for builds "
                "and environment groups; ask the site's admins to move that range "
                "(builder.build_uid_first, builder.environment_gid_first)."
            )
    kept = tuple(
        sorted(
            {
                g
                for g in supplementary
                if g != gid and min_id <= g <= MAX_ID and not any(g in r for r in reserved)
            }
        )
    )
    return LabIdentity(uid=uid, gid=gid, supplementary_gids=kept, name=name)


def reserved_ranges(builder: BuilderSettings) -> tuple[range, range]:
    """The ids KioskHub hands out itself: the build uids and the environment gids."""
    first = builder.build_uid_first
    return range(first, first + builder.build_uid_count), environment_gids(builder)


def _claimed_id(claims: Mapping[str, Any], claim: str, kind: str) -> int:
    if claim not in claims:
        raise IdentityError(
            f"Your sign-in has no {claim!r} claim (your lab {kind}), so no server can start "
            "for you; ask the site's admins to have the provider release it to this site."
        )
    return _integer(claims[claim], f"the claim {claim!r}")


def _integer(value: Any, what: str) -> int:
    """A JSON integer: not a bool, a float or a string of digits (a mapper set to the wrong
    type, which the site must fix rather than KioskHub guess)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise IdentityError(
        f"{what[0].upper()}{what[1:]} of your sign-in must be a whole number, got "
        f"{_shown(value)}; ask the site's admins to release it as a number (in Keycloak: "
        "the mapper's claim JSON type 'long' or 'int')."
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
