"""The hub assembly hands the spawner a user's environments from the build catalog.

A real catalog (SQLite in the state folder) holds an environment that a user registered and
built, with a display name that carries markup; the spawner, configured from the hub's
settings, offers it in its form, escaped, after reading the catalog in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading

from traitlets.config import Config

from kioskhub.hub.jupyterhub_settings import apply_settings, jupyterhub_settings
from kioskhub.hub.schema.builder import catalog_url
from kioskhub.hub.schema.site import Site
from kioskhub.hub.state_dir import Passwords
from kioskhub.image_builder.builder_base import Artifact
from kioskhub.image_builder.catalog_db import open_catalog
from kioskhub.image_builder.catalog_store import finish_ready, register
from kioskhub.spawner.local_process import KioskSpawner
from tests.support.kube_cluster import Group, HubUser

XSS = "<img src=x onerror=alert(1)>"


def test_the_form_offers_catalog_environments_read_in_a_thread_and_escaped(tmp_path):
    site = Site.model_validate(
        {"hub": {"state_dir": str(tmp_path / "state")}, "builder": {"enabled": True}}
    )
    catalog = open_catalog(catalog_url(site.builder, site.hub.state_dir))
    with catalog.session() as session:
        row, build = register(
            session, owner="ada", name="tomli", repo_url="https://gitlab.com/a/b.git",
            ref="main", subdir="", builder="local", visibility="private",
        )
        row.display_name = XSS
        finish_ready(session, build, Artifact("d" * 40, "h4", venv_path="/envs/h4"), "")
    catalog.close()

    settings = jupyterhub_settings(site, Passwords(user="u" * 8, admin="a" * 32), "chp")
    wired = settings["KioskSpawner"]["environments_for_user"]
    readers = []
    original = wired.read

    def read(*args):
        readers.append(threading.current_thread())
        return original(*args)

    wired.read = read
    config = Config()
    apply_settings(config, settings)  # as the hub's config file does
    spawner = KioskSpawner(user=HubUser("ada", [Group("physics")]), config=config)

    form = asyncio.run(spawner.get_options_form())

    assert spawner.environments_for_user is wired, "each spawner got a reader of its own"
    assert readers and threading.main_thread() not in readers
    assert 'value="ada.tomli"' in form
    assert "&lt;img src=x onerror=alert(1)&gt; (ada)" in form
    assert "<img src=x" not in form


def test_without_builds_the_spawner_offers_the_site_config():
    site = Site.model_validate({})
    settings = jupyterhub_settings(site, Passwords(user="u" * 8, admin="a" * 32), "chp")

    assert "environments_for_user" not in settings["KioskSpawner"]
