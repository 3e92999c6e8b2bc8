"""Literal-expectation tests of the pure steps from the site config to a running server.

Site → JupyterHub settings, site + user → LaunchSpec, the state folder that the hub makes
before a server starts (the user's home is in test_home.py), and the username rule that
the authenticator enforces.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from kioskhub.hub.auth import KioskAuthenticator, UsernameRefused
from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.schema.config_file import load_site
from kioskhub.hub.schema.site import (
    PACKAGE_ROOT,
    RESERVED_USERNAMES,
    USERNAME_PATTERN,
    Site,
    check_username,
)
from kioskhub.hub.state_dir import SECRETS_FILE, Passwords, prepare_state_dir
from kioskhub.hub.usage_pages import UsageAPIHandler, UsagePageHandler
from kioskhub.spawner.fork_choice import KERNEL_MODULES
from kioskhub.spawner.launch_spec import EnvironmentSpec, LaunchSpec, MountSpec, build_launch_spec
from kioskhub.spawner.local_process import SERVER_EXTENSIONS


def small_site(folder: Path, **sections) -> Site:
    """A site like a lab's first kioskhub.yaml, with its folders under ``folder``."""
    (folder / "data").mkdir(exist_ok=True)
    (folder / "examples").mkdir(exist_ok=True)
    config = {
        "hub": {
            "url": "http://127.0.0.1:9000",
            "state_dir": "state",
            "admin_users": ["boss"],
            "internal_ports": {"hub": 9001, "proxy_api": 9002},
            "log_level": "DEBUG",
        },
        "auth": {"shared_password": "correct-horse"},
        "spawner": {"start_timeout": 30},
        "home": {"root": "homes"},
        "data_mounts": [{"name": "beamtime", "source": "data", "mount_path": "/data"}],
        "examples": {"source": "examples"},
        "groups": {"physics": ["ada", "grace"]},
        **sections,
    }
    return Site.model_validate(config, context={"base_dir": folder})


def test_jupyterhub_settings(tmp_path):
    site = small_site(tmp_path)
    passwords = Passwords(user="correct-horse", admin="a" * 32, auth_state_key="f" * 64)

    settings = jupyterhub_settings(site, passwords, "/path/chp")

    audit_log = settings["JupyterHub"].pop("tornado_settings")["log_function"]
    assert audit_log.database == tmp_path / "state" / "audit.sqlite"
    handlers = settings["JupyterHub"].pop("extra_handlers")
    routes = [route for route, *_ in handlers]
    assert set(routes) >= {"/audit", "/api/audit", "/api/quota-overrides/([^/]+)"}
    assert (r"/usage", UsagePageHandler, {"state_dir": tmp_path / "state"}) in handlers
    assert (r"/api/usage", UsageAPIHandler, {"state_dir": tmp_path / "state"}) in handlers
    fork_servers = settings["KioskSpawner"].pop("fork_servers")
    assert (fork_servers.log_dir, fork_servers.preload, fork_servers.as_root) == (
        tmp_path / "state" / "logs",
        (*SERVER_EXTENSIONS, *KERNEL_MODULES),
        os.geteuid() == 0,
    )
    assert fork_servers.fork_kernels
    no_kernels = site.model_copy(
        update={"spawner": site.spawner.model_copy(update={"fork_kernels": False})}
    )
    plain = jupyterhub_settings(no_kernels, passwords, "/path/chp")["KioskSpawner"]["fork_servers"]
    assert (plain.preload, plain.fork_kernels) == (SERVER_EXTENSIONS, False)
    off = site.model_copy(
        update={"spawner": site.spawner.model_copy(update={"fork_server": False})}
    )
    assert "fork_servers" not in jupyterhub_settings(off, passwords, "/path/chp")["KioskSpawner"]
    assert settings == {
        "JupyterHub": {
            "bind_url": "http://127.0.0.1:9000/",
            "hub_ip": "127.0.0.1",
            "hub_port": 9001,
            "db_url": f"sqlite:///{tmp_path}/state/jupyterhub.sqlite",
            "cookie_secret_file": f"{tmp_path}/state/jupyterhub_cookie_secret",
            "pid_file": f"{tmp_path}/state/jupyterhub.pid",
            "authenticator_class": "kioskhub.hub.auth.KioskAuthenticator",
            "spawner_class": "kioskhub.spawner.local_process.KioskSpawner",
            "cleanup_servers": True,
            "log_level": "DEBUG",
            "template_paths": [str(PACKAGE_ROOT / "hub" / "templates")],
            "load_groups": {"physics": {"users": ["ada", "grace"]}},
            "authenticate_prometheus": True,
        },
        "ConfigurableHTTPProxy": {
            "command": ["/path/chp"],
            "api_url": "http://127.0.0.1:9002",
            "pid_file": f"{tmp_path}/state/proxy.pid",
        },
        "KioskAuthenticator": {
            "user_password": "correct-horse",
            "admin_password": "a" * 32,
            "admin_users": {"boss"},
            "allow_all": True,
            "username_pattern": USERNAME_PATTERN,
            "reserved_usernames": set(RESERVED_USERNAMES),
        },
        "CryptKeeper": {"keys": ["f" * 64]},
        "Authenticator": {
            "enable_auth_state": True,
            "auth_refresh_age": 300,
            "refresh_pre_spawn": True,
        },
        "KioskSpawner": {"site": site, "start_timeout": 30, "http_timeout": 60},
    }


def test_launch_spec_with_the_defaults(tmp_path):
    site = small_site(tmp_path)

    spec = build_launch_spec(site, "ada")

    assert spec == LaunchSpec(
        username="ada",
        environment=EnvironmentSpec("default", "venv", None, None),
        profile="small",
        cpu=1.0,
        memory_bytes=2_000_000_000,
        max_processes=1024,
        home=tmp_path / "homes" / "ada",
        default_url="/lab",
        mounts=(MountSpec("beamtime", tmp_path / "data", "/data", True),),
        env={
            "KIOSKHUB_USER": "ada",
            "KIOSKHUB_ENVIRONMENT": "default",
            "KIOSKHUB_PROFILE": "small",
            "CPU_LIMIT": "1",
            "MEM_LIMIT": "2000000000",
        },
        examples_source=tmp_path / "examples",
        examples_target="examples",
    )


def test_launch_spec_for_a_chosen_profile_and_group_mounts(tmp_path):
    (tmp_path / "calibration").mkdir()
    site = small_site(
        tmp_path,
        profiles=[
            {"name": "small", "default": True},
            {"name": "large", "cpu": 8, "memory": "32Gi", "groups": ["physics"]},
        ],
        data_mounts=[
            {"name": "beamtime", "source": "data", "mount_path": "/data"},
            {
                "name": "calibration",
                "source": "calibration",
                "mount_path": "/calibration",
                "read_only": False,
                "groups": ["physics"],
            },
        ],
    )

    spec = build_launch_spec(site, "grace", ["physics"], {"profile": "large"}, server_name="x")

    assert spec == LaunchSpec(
        username="grace",
        server_name="x",
        environment=EnvironmentSpec("default", "venv", None, None),
        profile="large",
        cpu=8.0,
        memory_bytes=32 * 2**30,
        max_processes=1024,
        home=tmp_path / "homes" / "grace",
        default_url="/lab",
        mounts=(
            MountSpec("beamtime", tmp_path / "data", "/data", True),
            MountSpec("calibration", tmp_path / "calibration", "/calibration", False, ("physics",)),
        ),
        env={
            "KIOSKHUB_USER": "grace",
            "KIOSKHUB_ENVIRONMENT": "default",
            "KIOSKHUB_PROFILE": "large",
            "CPU_LIMIT": "8",
            "MEM_LIMIT": str(32 * 2**30),
        },
        examples_source=tmp_path / "examples",
        examples_target="examples",
    )


def test_state_dir_generates_passwords_once(tmp_path):
    site = small_site(tmp_path, auth={})
    secrets_file = tmp_path / "state" / SECRETS_FILE

    first = prepare_state_dir(site)
    second = prepare_state_dir(site)

    assert first == second
    assert len(first.user) >= 8 and len(first.admin) >= 32
    assert json.loads(secrets_file.read_text()) == {
        "user_password": first.user,
        "admin_password": first.admin,
        "auth_state_key": first.auth_state_key,
    }
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o711


def test_passwords_set_in_the_config_win(tmp_path):
    generated = prepare_state_dir(small_site(tmp_path, auth={}))

    only_user = prepare_state_dir(small_site(tmp_path, auth={"shared_password": "lab-secret"}))
    both = prepare_state_dir(
        small_site(tmp_path, auth={"shared_password": "lab-secret", "admin_password": "b" * 32})
    )

    key, token = generated.auth_state_key, generated.metrics_token
    assert len(key) == 64 and int(key, 16)
    assert only_user == Passwords(
        user="lab-secret", admin=generated.admin, auth_state_key=key, metrics_token=token
    )
    assert both == Passwords(
        user="lab-secret", admin="b" * 32, auth_state_key=key, metrics_token=token
    )
    stored = json.loads((tmp_path / "state" / SECRETS_FILE).read_text())
    assert stored == {
        "user_password": generated.user,
        "admin_password": generated.admin,
        "auth_state_key": key,
    }


GOOD_USERNAMES = ["ada", "a", "0day", "grace.hopper", "x_1-2", "a" * 29]
BAD_USERNAMES = ["", "Ada", "-ada", ".ada", "_ada", "a b", "a" * 30, "ada/..", "åda", "ada\n"]


@pytest.mark.parametrize("name", GOOD_USERNAMES)
def test_good_username(name):
    assert check_username(name) == name


@pytest.mark.parametrize("name", BAD_USERNAMES)
def test_bad_username(name):
    with pytest.raises(ValueError) as raised:
        check_username(name)

    assert str(raised.value) == (
        f"invalid username {name!r}: use 1–29 characters of lowercase letters, digits, "
        "'.', '_' or '-', starting with a letter or digit"
    )


def test_authenticator_normalises_then_checks_the_username():
    authenticator = KioskAuthenticator(
        user_password="correct-horse", admin_password="a" * 32, admin_users={"boss"}
    )

    def sign_in(username: str, password: str):
        return asyncio.run(
            authenticator.authenticate(None, {"username": username, "password": password})
        )

    assert sign_in(" Ada ", "correct-horse") == {"name": "ada", "admin": False, "groups": []}
    assert sign_in("boss", "a" * 32) == {"name": "boss", "admin": True, "groups": []}
    assert sign_in("ada", "wrong-horse") is None
    with pytest.raises(UsernameRefused) as refused:
        sign_in("a b", "correct-horse")
    assert refused.value.args == (
        "Invalid username 'a b': use 1–29 characters of lowercase letters, digits, "
        "'.', '_' or '-', starting with a letter or digit",
    )


def test_default_paths_are_taken_from_the_config_folder(tmp_path):
    config = tmp_path / "kioskhub.yaml"
    config.write_text("")

    site = load_site(config)

    assert site.hub.state_dir == tmp_path / ".kioskhub"
    assert site.home.root == tmp_path / ".kioskhub" / "homes"
