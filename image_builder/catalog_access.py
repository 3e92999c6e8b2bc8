"""Who may see and change which catalog environment: pure rules, one place.

- Everyone sees site-wide environments (visibility ``site``) and the site's own ones that
  their groups allow.
- Owners see and manage their own; members of a group an environment is shared with see it.
- Admins see and manage all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import SITE_OWNER, EnvironmentRecord, visibility_groups


@dataclass(frozen=True)
class Viewer:
    """A hub user as the catalog sees them."""

    name: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False


def can_see(environment: EnvironmentRecord, viewer: Viewer) -> bool:
    if viewer.admin or environment.owner == viewer.name:
        return True
    if environment.visibility == "site":
        return True
    return bool(visibility_groups(environment.visibility) & viewer.groups)


def can_manage(environment: EnvironmentRecord, viewer: Viewer) -> bool:
    """Rebuild, delete and share: the owner, or an admin (site environments: admins only)."""
    if environment.owner == SITE_OWNER:
        return viewer.admin
    return viewer.admin or environment.owner == viewer.name


def can_share_with(viewer: Viewer, visibility: str) -> bool:
    """Users share with their own groups; 'site' and other groups are for admins."""
    if viewer.admin or visibility == "private":
        return True
    groups = visibility_groups(visibility)
    return bool(groups) and groups <= viewer.groups
