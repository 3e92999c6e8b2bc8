"""The catalog: migrations, registration, build bookkeeping, visibility, site sync, spawn view."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.builder_base import Artifact
from kioskhub.image_builder.catalog import EnvironmentRecord, check_visibility
from kioskhub.image_builder.catalog_access import Viewer, can_manage, can_see, can_share_with
from kioskhub.image_builder.catalog_db import open_catalog
from kioskhub.image_builder.catalog_store import (
    Conflict,
    PinRefused,
    finish_failed,
    finish_ready,
    queue_build,
    queue_pinned_build,
    register,
    start_build,
    sync_site_environments,
    visible,
)
from kioskhub.image_builder.spawn_catalog import environments_for

ADA = Viewer("ada", frozenset({"physics"}))
BOB = Viewer("bob")
CY = Viewer("cy", frozenset({"physics"}))
ADMIN = Viewer("root", admin=True)


@pytest.fixture
def catalog(tmp_path):
    catalog = open_catalog(f"sqlite:///{tmp_path / 'state' / 'environments.sqlite'}")
    yield catalog
    catalog.close()


def add(session, owner="ada", name="tomli", visibility="private"):
    row, build = register(
        session,
        owner=owner,
        name=name,
        repo_url="https://gitlab.com/a/b.git",
        ref="main",
        subdir="",
        builder="local",
        visibility=visibility,
    )
    return row, build


def test_migrations_make_the_schema_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.sqlite'}"
    for _ in range(2):
        catalog = open_catalog(url)
        tables = set(inspect(catalog.engine).get_table_names())
        with catalog.engine.connect() as connection:
            version = connection.execute(text("select version_num from alembic_version")).scalar()
        catalog.close()
    assert {"environments", "builds", "pin_grants", "alembic_version"} <= tables
    assert version == "0004"
    assert (tmp_path / "c.sqlite").stat().st_mode & 0o777 == 0o600


def test_register_queues_a_build_and_names_are_unique(catalog):
    with catalog.session() as session:
        row, build = add(session)
        assert (row.status, build.status, build.ref, row.launchable) == (
            "queued",
            "queued",
            "main",
            False,
        )
        with pytest.raises(Conflict, match="already have an environment named 'tomli'"):
            add(session)
        with pytest.raises(ValueError, match="invalid environment name"):
            add(session, name="Bad.Name")


def test_a_failed_rebuild_keeps_the_ready_artifact(catalog):
    with catalog.session() as session:
        row, build = add(session)
        finish_ready(session, build, Artifact("a" * 40, "h1", venv_path="/envs/h1"), "log 1")
        rebuild = queue_build(session, row)
        finish_failed(session, rebuild, "installing packages failed", "log 2")
        assert row.status == "failed"
        assert (row.venv_path, row.commit_sha, row.launchable) == ("/envs/h1", "a" * 40, True)
        assert [b.status for b in row.builds] == ["ready", "failed"]
        assert row.builds[-1].log == "log 2"
        assert row.builds[-1].error == "installing packages failed"
        assert row.to_dict()["latest_build"]["status"] == "failed"


def test_who_sees_and_manages_what(catalog):
    with catalog.session() as session:
        private, _ = add(session, name="mine")
        shared, _ = add(session, name="shared", visibility="group:physics")
        site_wide, _ = add(session, name="open", visibility="site")
        assert [r.name for r in visible(session, ADA)] == ["mine", "open", "shared"]
        assert [r.name for r in visible(session, CY)] == ["open", "shared"]
        assert [r.name for r in visible(session, BOB)] == ["open"]
        assert len(visible(session, ADMIN)) == 3
    assert can_manage(private, ADA) and can_manage(private, ADMIN)
    assert not can_manage(shared, CY) and not can_see(private, BOB)
    assert can_share_with(ADA, "group:physics") and not can_share_with(ADA, "group:chem")
    assert not can_share_with(ADA, "site") and can_share_with(ADMIN, "site")
    with pytest.raises(ValueError):
        check_visibility("group:")


def site_with(tmp_path, environments) -> Site:
    (tmp_path / "examples").mkdir(exist_ok=True)
    return Site.model_validate(
        {
            "hub": {"state_dir": str(tmp_path / "state")},
            "environments": environments,
            "builder": {"enabled": True},
            "examples": {"source": str(tmp_path / "examples")},
        },
    )


def test_site_environments_are_synced_and_repository_ones_built(catalog, tmp_path):
    site = site_with(
        tmp_path,
        [
            {"name": "default", "default": True},
            {
                "name": "teaching",
                "kind": "repository",
                "repository": "https://gitlab.com/t/c.git",
                "groups": ["teachers"],
            },
        ],
    )
    with catalog.session() as session:
        to_build = sync_site_environments(session, site.environments)
        assert [r.name for r in to_build] == ["teaching"]
        rows = {r.name: r for r in session.query(EnvironmentRecord)}
        assert rows["default"].builder == "site" and rows["default"].launchable
        assert rows["teaching"].visibility == "group:teachers"
        finish_ready(
            session,
            queue_build(session, rows["teaching"]),
            Artifact("b" * 40, "h2", venv_path="/envs/h2"),
            "",
        )
        assert sync_site_environments(session, site.environments) == []
        assert sync_site_environments(session, site.environments[:1]) == []
        assert [r.name for r in session.query(EnvironmentRecord)] == ["default"]


def test_the_spawner_sees_ready_own_shared_and_built_site_environments(catalog, tmp_path):
    site = site_with(
        tmp_path,
        [
            {"name": "default", "default": True},
            {"name": "teaching", "kind": "repository", "repository": "https://gitlab.com/t/c.git"},
        ],
    )
    with catalog.session() as session:
        for row in sync_site_environments(session, site.environments):
            finish_ready(
                session,
                queue_build(session, row),
                Artifact("c" * 40, "h3", venv_path="/envs/h3"),
                "",
            )
        row, build = add(session, visibility="group:physics")
        finish_ready(session, build, Artifact("d" * 40, "h4", venv_path="/envs/h4"), "")
        add(session, name="unbuilt")
    ada = environments_for(site, "ada", ["physics"], catalog)
    assert [e.name for e in ada] == ["default", "teaching", "ada.tomli"]
    assert ada[1] == Environment(
        name="teaching",
        kind="venv",
        path=Path("/envs/h3"),
        description="Built from https://gitlab.com/t/c.git @ cccccccccccc.",
    )
    assert ada[2].path == Path("/envs/h4") and ada[2].display_name == "tomli (ada)"
    assert "@ dddddddddddd" in ada[2].description
    assert [e.name for e in environments_for(site, "cy", ["physics"], catalog)][-1] == "ada.tomli"
    assert [e.name for e in environments_for(site, "bob", [], catalog)] == ["default", "teaching"]


def test_a_builds_notes_show_on_the_environment_and_the_build(catalog):
    note = "runtime.txt line 1 asks for Python 3.10; built with Python 3.11, the nearest."
    with catalog.session() as session:
        row, build = add(session)
        assert row.to_dict()["artifact"]["notes"] == []
        finish_ready(
            session, build, Artifact("a" * 40, "h1", venv_path="/envs/h1", notes=[note]), "log"
        )
        assert row.to_dict()["artifact"]["notes"] == [note]
        assert build.to_dict()["artifact"]["notes"] == [note]


def test_a_pinned_build_rebuilds_a_built_commit_beside_the_environment(catalog, tmp_path):
    site = site_with(tmp_path, [{"name": "default", "default": True}])
    with catalog.session() as session:
        row, build = add(session, visibility="group:physics")
        finish_ready(session, build, Artifact("a" * 40, "h1", venv_path="/envs/h1"), "")
        finish_ready(
            session, queue_build(session, row), Artifact("b" * 40, "h2", venv_path="/envs/h2"), ""
        )
        # Only a commit a ready build of it was built from may be pinned.
        with pytest.raises(PinRefused, match="commit 'ffff.*' was never built for 'ada.tomli'"):
            queue_pinned_build(session, row, "f" * 40, "cy")
        pinned, new = queue_pinned_build(session, row, "a" * 40, "cy")
        assert new and pinned.pinned and pinned.ref == "a" * 40
        again, new = queue_pinned_build(session, row, "a" * 40, "ada")
        assert again.id == pinned.id and not new
        start_build(session, pinned)
        assert row.status == "ready"
        finish_ready(session, pinned, Artifact("a" * 40, "h1", venv_path="/envs/h1"), "")
        # The environment keeps its own build, status and latest build.
        assert (row.content_hash, row.venv_path, row.status) == ("h2", "/envs/h2", "ready")
        assert row.to_dict()["latest_build"]["pinned"] is False
    cy = environments_for(site, "cy", ["physics"], catalog)
    assert [e.name for e in cy] == ["default", "ada.tomli", "pin-h1"]
    assert cy[-1].path == Path("/envs/h1")
    assert cy[-1].display_name == f"tomli at {'a' * 12} (pinned)"
    # Granted to cy and ada only; bob is granted nothing, and could not see it anyway.
    assert [e.name for e in environments_for(site, "ada", ["physics"], catalog)][-1] == "pin-h1"
    assert [e.name for e in environments_for(site, "bob", [], catalog)] == ["default"]
    # Granted, but no longer in the group: not offered.
    assert [e.name for e in environments_for(site, "cy", [], catalog)] == ["default"]


def test_a_failed_pinned_build_leaves_the_environment_alone(catalog):
    with catalog.session() as session:
        row, build = add(session)
        finish_ready(session, build, Artifact("a" * 40, "h1", venv_path="/envs/h1"), "")
        pinned, _ = queue_pinned_build(session, row, "a" * 40, "ada")
        finish_failed(session, pinned, "the package index did not answer", "")
        assert row.status == "ready"
        retried, new = queue_pinned_build(session, row, "a" * 40, "ada")
        assert new and retried.id != pinned.id
