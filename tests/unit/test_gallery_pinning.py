"""A version's pinning comes from the server's options and the build catalog (a real one),
with the site's defaults filled in; and the hub settings that run the gallery service."""

from __future__ import annotations

import sys

import pytest

from kioskhub.hub.gallery.hub_service import ACCESS_SCOPE, gallery_hub_settings
from kioskhub.hub.gallery.pinning import environment_name, pinning_for
from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.state_dir import Passwords
from kioskhub.image_builder.builder_base import Artifact
from kioskhub.image_builder.catalog_db import open_catalog
from kioskhub.image_builder.catalog_store import finish_ready, register
from tests.unit.test_hub_settings import small_site

DIGEST = "sha256:" + "d" * 64
COMMIT = "c" * 40


@pytest.fixture
def catalog(tmp_path):
    catalog = open_catalog(f"sqlite:///{tmp_path / 'environments.sqlite'}")
    with catalog.session() as session:
        row, build = register(
            session, owner="ada", name="fit", repo_url="https://gitlab.com/ada/fit.git",
            ref="main", subdir="", builder="container", visibility="private",
        )  # fmt: skip
        session.flush()
        finish_ready(
            session,
            build,
            Artifact(COMMIT, image_ref="registry.lab/ada/fit:" + COMMIT, image_digest=DIGEST),
            "",
        )
    yield catalog
    catalog.close()


def test_a_catalog_environment_is_pinned_to_its_build(tmp_path, catalog):
    site = small_site(tmp_path)
    assert pinning_for(site, catalog, "ada.fit", "small") == {
        "environment": "ada.fit",
        "profile": "small",
        "source": "catalog",
        "kind": "image",
        "image": "registry.lab/ada/fit:" + COMMIT,
        "digest": DIGEST,
        "content_hash": None,
        "commit": COMMIT,
        "repository": "https://gitlab.com/ada/fit.git",
    }


def test_a_site_environment_is_pinned_to_the_config(tmp_path, catalog):
    site = small_site(tmp_path)
    pinning = pinning_for(site, catalog, "default", None)
    assert pinning == {
        "environment": "default",
        "profile": None,
        "source": "site config",
        "kind": "venv",
        "image": None,
        "path": None,
    }


def test_an_environment_no_one_knows_is_unknown(tmp_path):
    site = small_site(tmp_path)
    assert pinning_for(site, None, "bob.gone", None) == {
        "environment": "bob.gone",
        "profile": None,
        "source": "unknown",
    }


def test_the_options_name_the_environment_else_the_sites_default(tmp_path):
    site = small_site(tmp_path)
    assert environment_name(site, {"environment": ["ada.fit"], "profile": "small"}, []) == (
        "ada.fit",
        "small",
    )
    default_profile = next(p for p in site.profiles if p.default).name
    assert environment_name(site, {}, []) == ("default", default_profile)


def test_the_gallery_service_runs_only_when_enabled(tmp_path):
    passwords = Passwords(user="correct-horse", admin="a" * 32, auth_state_key="f" * 64)
    off = jupyterhub_settings(small_site(tmp_path), passwords, "/path/chp")
    assert "gallery" not in [s["name"] for s in off["JupyterHub"].get("services", [])]
    assert "kh_gallery_url" not in off["JupyterHub"].get("template_vars", {})

    site = small_site(tmp_path, gallery={"enabled": True, "port": 8123})
    settings = jupyterhub_settings(site, passwords, "/path/chp")
    (service,) = [s for s in settings["JupyterHub"]["services"] if s["name"] == "gallery"]
    assert service["command"] == [sys.executable, "-m", "kioskhub.hub.gallery.service"]
    assert service["url"] == "http://127.0.0.1:8123"
    assert '"shared_password"' not in service["environment"]["KIOSKHUB_SITE_JSON"]
    roles = {role["name"]: role for role in settings["JupyterHub"]["load_roles"]}
    assert ACCESS_SCOPE in roles["user"]["scopes"]
    assert roles["kioskhub-gallery"] == {
        "name": "kioskhub-gallery",
        "description": "The review gallery: who a user is, their groups, their servers' "
        "options; starts, uses and stops the re-execution server; removes temporary "
        "reviewer seats that ended",
        "services": ["gallery"],
        "scopes": [
            "read:users:name",
            "read:users:groups",
            "read:servers",
            "custom:gallery:reexecute",
            "access:servers!user=gallery-run",
            "custom:gallery:seats",
        ],
    }
    paths = [path for path, *_ in settings["JupyterHub"]["extra_handlers"]]
    assert r"/api/gallery/reexecution-server" in paths
    assert r"/gallery-seat/([A-Za-z0-9_-]{43})" in paths
    assert r"/api/gallery/seats/([^/]+)" in paths
    assert settings["JupyterHub"]["template_vars"]["kh_gallery_url"] == "/services/gallery/"
    assert gallery_hub_settings(small_site(tmp_path), python="python") == {}


def test_the_gallery_and_workshops_each_keep_their_custom_scope(tmp_path):
    passwords = Passwords(user="correct-horse", admin="a" * 32, auth_state_key="f" * 64)
    site = small_site(
        tmp_path, gallery={"enabled": True, "port": 8123}, workshops={"enabled": True}
    )
    scopes = jupyterhub_settings(site, passwords, "/path/chp")["JupyterHub"]["custom_scopes"]
    assert sorted(scopes) == [
        "custom:gallery:reexecute", "custom:gallery:seats", "custom:workshops:prewarm"
    ]  # fmt: skip


def test_the_gallery_alone_may_ask_for_pinned_builds_where_the_site_builds(tmp_path):
    passwords = Passwords(user="correct-horse", admin="a" * 32, auth_state_key="f" * 64)
    site = small_site(
        tmp_path, gallery={"enabled": True, "port": 8123}, builder={"enabled": True, "port": 8124}
    )
    hub = jupyterhub_settings(site, passwords, "/path/chp")["JupyterHub"]
    roles = {role["name"]: role for role in hub["load_roles"]}
    pinned = "custom:environments:pinned-builds"
    assert pinned in hub["custom_scopes"]
    assert roles["kioskhub-gallery"]["scopes"][-2:] == [
        pinned, "access:services!service=environments"
    ]  # fmt: skip
    holders = [name for name, role in roles.items() if pinned in role.get("scopes", ())]
    assert holders == ["kioskhub-gallery"]
    without = small_site(tmp_path, gallery={"enabled": True, "port": 8123})
    settings = jupyterhub_settings(without, passwords, "/path/chp")["JupyterHub"]
    assert pinned not in settings["custom_scopes"]
