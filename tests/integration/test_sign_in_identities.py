"""Hostile usernames at the real login page: refused with the reason, no traceback, no user.

Attack: sign in as ``build`` (which would run as kh-build, the account of every build), as
``site`` (the owner of the site's catalog rows), as a system account, as a look-alike of a
KioskHub account, or with names that carry paths, shell or markup. Each gets the login page
again, status 400, its reason shown escaped, and no hub user is made.
"""

import json
import shutil

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import start_hub, write_site_config
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration

RESERVED = "is reserved for KioskHub or the system"
INVALID = "use 1–29 characters of lowercase letters, digits"

HOSTILE_USERNAMES = {
    "the build account": ("build", RESERVED),
    "the build account, upper case": (" BUILD ", RESERVED),
    "the site's catalog owner": ("site", RESERVED),
    "a hub service": ("environments", RESERVED),
    "root": ("root", RESERVED),
    "nobody": ("nobody", RESERVED),
    "a KioskHub account look-alike": ("kh-ada", RESERVED),
    "a path": ("../../etc/passwd", INVALID),
    "a shell string": ("ada;rm -rf /", INVALID),
    "markup": ("<script>alert(1)</script>", INVALID),
    "a cyrillic look-alike": ("\u0430da", INVALID),
    "very long": ("a" * 5000, INVALID),
    "empty": ("", INVALID),
}


@pytest.fixture(scope="module")
def hub():
    folder = open_folder("identities")
    write_sample_data(folder / "data")
    started = start_hub(write_site_config(folder), folder / "hub.log")
    yield started
    if started.process.poll() is None:
        started.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize(("username", "reason"), HOSTILE_USERNAMES.values(), ids=HOSTILE_USERNAMES)
def test_hostile_usernames_are_refused_on_the_login_page(hub, username, reason):
    reply = UserSession(hub.url, username).login(SHARED_PASSWORD)

    page = reply.content.decode("utf-8")  # the page says so in <meta charset>
    assert reply.status_code == 400, page[:500]
    assert reason in page
    assert 'class="login_error"' in page, "the reason is not on the login page"
    assert "<script>alert(1)" not in page
    assert "Traceback" not in hub.log_text()


def test_no_refused_name_became_a_hub_user(hub, admin_token):
    names = {u["name"] for u in hub.api("/users", admin_token).json()}

    assert not names & {"build", "site", "environments", "root", "nobody", "kh-ada"}


def test_an_admin_cannot_make_a_user_named_build(hub, admin_token):
    reply = hub.api("/users/build", admin_token, method="POST")

    assert reply.status_code == 400
    assert reply.json()["message"] == "Failed to create user: build"
    assert hub.api("/users/build", admin_token).status_code == 404


@pytest.fixture(scope="module")
def admin_token(hub):
    secrets = json.loads((hub.config.parent / "state" / "secrets.json").read_text())
    admin = UserSession(hub.url, "admin")
    assert admin.login(secrets["admin_password"]).status_code == 200
    return admin.request_token()
