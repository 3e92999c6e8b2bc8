"""The site's catalog rows are owned by a marker no username can be, and old catalogs move.

Attack: a hub user named ``site`` owned the same string as the site's rows, so they saw every
site environment (also those kept to a group), and what they registered became a site
environment (no owner prefix in the spawn form, sources trusted as the site config's).
"""

from __future__ import annotations

import re

from sqlalchemy import create_engine, text

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import USERNAME_PATTERN
from kioskhub.image_builder.catalog import SITE_OWNER, EnvironmentRecord
from kioskhub.image_builder.catalog_access import Viewer, can_manage, can_see
from kioskhub.image_builder.catalog_db import open_catalog, upgrade
from kioskhub.image_builder.catalog_store import register, sync_site_environments

SITE_NAMED_USER = Viewer("site")
CONFIG = [
    Environment(name="default", default=True),
    Environment(name="teaching", groups=("teachers",)),
]


def test_the_site_owner_is_no_username():
    assert not re.fullmatch(USERNAME_PATTERN, SITE_OWNER)


def test_a_user_named_site_has_no_site_rights(tmp_path):
    catalog = open_catalog(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with catalog.session() as session:
        sync_site_environments(session, CONFIG)
        rows = {row.name: row for row in session.query(EnvironmentRecord)}
        assert not can_see(rows["teaching"], SITE_NAMED_USER)
        assert not can_manage(rows["default"], SITE_NAMED_USER)

        own, _ = register(
            session,
            owner="site",
            name="mine",
            repo_url="https://gitlab.com/a/b.git",
            ref="HEAD",
            subdir="",
            builder="local",
        )
        assert own.spawn_name == "site.mine", "a user's row passed for a site environment"
        sync_site_environments(session, CONFIG)
        assert session.get(EnvironmentRecord, own.id) is not None
    catalog.close()


def test_a_catalog_of_the_previous_revision_keeps_its_site_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    upgrade(engine, "0001")
    stamp = "'2025-11-22 00:00:00'"
    with engine.begin() as connection:
        for owner, name, builder in [("site", "default", "site"), ("ada", "tomli", "local")]:
            connection.execute(
                text(
                    "insert into environments (name, owner, display_name, description, ref,"
                    " subdir, builder, status, visibility, venv_path, created_at, updated_at)"
                    f" values ('{name}', '{owner}', '', '', 'HEAD', '', '{builder}', 'ready',"
                    f" 'site', '/envs/{name}', {stamp}, {stamp})"
                )
            )
    engine.dispose()

    catalog = open_catalog(url)
    with catalog.session() as session:
        owners = {row.name: (row.id, row.owner) for row in session.query(EnvironmentRecord)}
        assert owners == {"default": (1, SITE_OWNER), "tomli": (2, "ada")}
        sync_site_environments(session, CONFIG[:1])
        assert {row.name: row.id for row in session.query(EnvironmentRecord)} == {
            "default": 1,
            "tomli": 2,
        }
    with catalog.engine.connect() as connection:
        assert connection.execute(text("select version_num from alembic_version")).scalar() == (
            "0004"
        )
    catalog.close()
