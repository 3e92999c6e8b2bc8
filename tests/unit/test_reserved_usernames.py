"""Usernames that would collide with KioskHub's own identities are refused everywhere.

A hub user ``build`` would run as ``kh-build``, the account of every user's builds; a user
``site`` would own the site's catalog rows. The schema's rule refuses them, the
authenticator applies it at sign-in and to every other way a user is made, and a site
config that names one as an admin or group member is a config error naming the key.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from kioskhub.hub.auth import KioskAuthenticator, UsernameRefused
from kioskhub.hub.schema.site import RESERVED_USERNAMES, Site, check_username

RESERVED = [
    "build", "site", "environments", "dask-gateway", "gallery-run", "root", "nobody", "daemon"
]
LOOK_ALIKES = ["kh-ada", "kh-build", "systemd-network", "ws-x", "ws-abc234-001", "rv-0a1b2c3d4e"]


@pytest.mark.parametrize("name", RESERVED + LOOK_ALIKES)
def test_reserved_names_are_refused_with_the_reason(name):
    with pytest.raises(ValueError) as raised:
        check_username(name)

    assert str(raised.value) == (
        f"the username {name!r} is reserved for KioskHub or the system; "
        "sign in with your own username"
    )


def test_a_reserved_admin_is_a_config_error_naming_the_key():
    with pytest.raises(ValidationError) as raised:
        Site(hub={"admin_users": ["admin", "build"]})
    assert raised.value.errors()[0]["loc"] == ("hub", "admin_users")
    assert "the username 'build' is reserved" in str(raised.value)


def test_a_reserved_group_member_is_a_config_error_naming_the_group():
    with pytest.raises(ValidationError) as raised:
        Site(groups={"physics": ["ada", "site"]})
    assert "groups.physics: site is a reserved name" in str(raised.value)


@pytest.mark.parametrize("name", ["build", " Build ", "SITE", "kh-ada", "ROOT"])
def test_sign_in_with_a_reserved_name_is_refused(name):
    authenticator = KioskAuthenticator(user_password="correct-horse", admin_password="a" * 32)

    with pytest.raises(UsernameRefused) as refused:
        asyncio.run(
            authenticator.authenticate(None, {"username": name, "password": "correct-horse"})
        )

    assert "is reserved for KioskHub or the system" in str(refused.value)


def test_every_other_way_to_make_a_user_refuses_reserved_names():
    """validate_username is what JupyterHub's admin API and other sign-in paths ask."""
    authenticator = KioskAuthenticator(reserved_usernames={"builder", *RESERVED_USERNAMES})

    assert authenticator.validate_username("ada")
    for name in ["build", "builder", "site", "kh-ada", "root"]:
        assert not authenticator.validate_username(name), name
