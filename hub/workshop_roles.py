"""JupyterHub RBAC for workshop teachers: a role per event, scoped to the event's group.

A teacher of event ``abc123`` holds the role ``workshop-abc123-teacher``: start and stop
(``servers``), read (``read:users``) and open (``access:servers``) the servers of the
members of the group ``workshop-abc123``, and of no one else. The role is made and granted
when the event is created (``grant_teacher_role``), and because JupyterHub deletes at
start every role that ``load_roles`` does not name, the roles of the events not yet
expired are given to ``load_roles`` from the store at each start (``teacher_load_roles``).
"""

from __future__ import annotations

from pathlib import Path

from jupyterhub import orm, roles

from .workshop_store import Event, database, events


def teacher_role_name(event: Event) -> str:
    return f"workshop-{event.event_id}-teacher"


def teacher_role(event: Event) -> dict:
    """The role of ``event``'s teacher, as ``load_roles`` takes it (pure)."""
    group = event.group
    return {
        "name": teacher_role_name(event),
        "description": f"Teacher of workshop {event.event_id}: its participants' servers",
        "scopes": [
            f"servers!group={group}",
            f"read:users!group={group}",
            f"access:servers!group={group}",
        ],
        "users": [event.teacher],
    }


def grant_teacher_role(db, event: Event) -> None:
    """Create ``event``'s group and its teacher role, and grant the role to the teacher."""
    if orm.Group.find(db, event.group) is None:
        db.add(orm.Group(name=event.group))
        db.commit()
    spec = teacher_role(event)
    role = roles.create_role(db, {k: v for k, v in spec.items() if k != "users"})
    teacher = orm.User.find(db, event.teacher)
    if teacher is not None:
        roles.grant_role(db, teacher, role)


def teacher_load_roles(state_dir: Path) -> list[dict]:
    """The teacher roles of every event not yet expired, read from the store at start.

    Reads only a store that exists: the hub makes it when the first event is created."""
    path = database(state_dir)
    if not path.is_file():
        return []
    return [teacher_role(event) for event in events(path) if event.expired is None]


def add_to_group(db, orm_user, group_name: str) -> None:
    """``orm_user`` in the event's JupyterHub group, made when missing (as the group API does)."""
    group = orm.Group.find(db, group_name)
    if group is None:
        group = orm.Group(name=group_name)
        db.add(group)
    if orm_user not in group.users:
        group.users.append(orm_user)
    db.commit()
