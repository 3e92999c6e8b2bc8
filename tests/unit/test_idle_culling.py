"""Literal-expectation tests of idle culling: the site's ``culling`` section → the culler
service's hub settings and each server's environment (pure); the culler's per-profile
decision; the warning a server reports before it is culled."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from kioskhub.extensions.cull_notice import CullLimits, culling_state, minutes_text
from kioskhub.hub.idle_culler_profiles import ProfileIdleCuller, should_cull
from kioskhub.hub.idle_culling import culling_hub_settings
from kioskhub.hub.jupyterhub_settings import jupyterhub_settings
from kioskhub.hub.schema.site import Site
from kioskhub.hub.state_dir import Passwords
from kioskhub.spawner.launch_spec import build_launch_spec

PROFILES = [
    {"name": "small", "default": True},
    {"name": "gpu-short", "cpu": 2, "memory": "4G"},
    {"name": "long", "cpu": 2, "memory": "4G"},
]
CULLING = {
    "enabled": True,
    "timeout": 3600,
    "max_age": 86400,
    "every": 60,
    "warn_before": 600,
    "profiles": [{"name": "gpu-short", "timeout": 1800, "max_age": 28800}, {"name": "long"}],
}


def culling_site(folder: Path, **culling) -> Site:
    return Site.model_validate(
        {
            "hub": {"url": "http://127.0.0.1:9000", "state_dir": "state"},
            "profiles": PROFILES,
            "culling": {**CULLING, **culling},
        },
        context={"base_dir": folder},
    )


def test_the_culler_runs_as_a_service_with_its_own_minimal_role(tmp_path):
    site = culling_site(tmp_path)
    assert culling_hub_settings(site, python="/venv/bin/python") == {
        "JupyterHub": {
            "services": [
                {
                    "name": "idle-culler",
                    "command": [
                        "/venv/bin/python",
                        "-m",
                        "kioskhub.hub.idle_culler_profiles",
                        "--timeout=3600",
                        "--max-age=86400",
                        "--cull-every=60",
                        "--cull-users=False",
                        "--remove-named-servers=False",
                    ],
                    "environment": {
                        "KIOSKHUB_CULL_LIMITS": json.dumps(
                            {
                                "default_profile": "small",
                                "profiles": {
                                    "gpu-short": [1800, 28800],
                                    "long": [3600, 86400],
                                    "small": [3600, 86400],
                                },
                            },
                            sort_keys=True,
                        )
                    },
                    "cwd": str(tmp_path / "state"),
                    "display": False,
                }
            ],
            "load_roles": [
                {
                    "name": "kioskhub-idle-culler",
                    "description": "Stops idle servers: lists users and stops their servers",
                    "services": ["idle-culler"],
                    "scopes": [
                        "list:users",
                        "read:users:activity",
                        "read:servers",
                        "delete:servers",
                    ],
                }
            ],
        }
    }


def test_culling_off_adds_nothing(tmp_path):
    site = culling_site(tmp_path, enabled=False)
    assert culling_hub_settings(site, python="python") == {}
    spec = build_launch_spec(site, "ada", options={"profile": "gpu-short"})
    assert not [name for name in spec.env if "CULL" in name or "ACTIVITY" in name]


def test_the_hub_settings_carry_the_culler_beside_the_other_services(tmp_path):
    site = culling_site(tmp_path)
    settings = jupyterhub_settings(site, Passwords(user="u", admin="a"), "chp")
    names = [service["name"] for service in settings["JupyterHub"]["services"]]
    assert "idle-culler" in names
    roles = {role["name"]: role for role in settings["JupyterHub"]["load_roles"]}
    assert roles["kioskhub-idle-culler"]["services"] == ["idle-culler"]
    assert "admin:users" not in roles["kioskhub-idle-culler"]["scopes"]


def test_each_server_is_told_its_profiles_limits(tmp_path):
    site = culling_site(tmp_path)
    gpu = build_launch_spec(site, "ada", options={"profile": "gpu-short"})
    small = build_launch_spec(site, "ada")
    culling = {k: v for k, v in gpu.env.items() if "CULL" in k or "ACTIVITY" in k}
    assert culling == {
        "KIOSKHUB_CULL_TIMEOUT": "1800",
        "KIOSKHUB_CULL_MAX_AGE": "28800",
        "KIOSKHUB_CULL_WARN": "600",
        "JUPYTERHUB_ACTIVITY_INTERVAL": "300",
    }
    assert small.env["KIOSKHUB_CULL_TIMEOUT"] == "3600"
    assert small.env["KIOSKHUB_CULL_MAX_AGE"] == "86400"


def test_short_timeouts_make_servers_report_activity_more_often(tmp_path):
    site = culling_site(
        tmp_path, timeout=40, warn_before=10, profiles=[{"name": "gpu-short", "timeout": 12}]
    )
    assert site.culling.activity_interval() == 3
    spec = build_launch_spec(site, "ada")
    assert spec.env["JUPYTERHUB_ACTIVITY_INTERVAL"] == "3"


@pytest.mark.parametrize(
    "culling, message",
    [
        (
            {"profiles": [{"name": "gpu", "timeout": 1200}]},
            "culling.profiles: gpu is not a resource profile; the profiles are: small, "
            "gpu-short, long",
        ),
        (
            {"profiles": [{"name": "long"}, {"name": "long"}]},
            "profiles: names must be unique; repeated: long",
        ),
        (
            {"profiles": [{"name": "gpu-short", "timeout": 300}]},
            "warn_before (600 s) must be shorter than profiles[gpu-short].timeout (300 s)",
        ),
        ({"every": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_culling_settings_name_the_problem(tmp_path, culling, message):
    with pytest.raises(ValidationError) as raised:
        culling_site(tmp_path, **culling)
    assert message in str(raised.value)


# --- the culler's decision ------------------------------------------------------------------

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LIMITS = {"small": [3600, 0], "gpu-short": [1800, 7200]}


def decide(profile: str | None, idle_s: float, age_s: float) -> bool:
    server = {
        "user_options": {"profile": profile} if profile else {},
        "started": (NOW - timedelta(seconds=age_s)).isoformat(),
    }
    return should_cull(
        inactive=timedelta(seconds=idle_s),
        server=server,
        limits=LIMITS,
        default_profile="small",
        fallback=(600, 0),
        now=NOW,
    )


@pytest.mark.parametrize(
    "profile, idle_s, age_s, culled",
    [
        ("gpu-short", 1799, 1799, False),
        ("gpu-short", 1800, 1800, True),  # its own, shorter timeout
        ("small", 1800, 1800, False),
        (None, 3600, 3600, True),  # no choice: the default profile's limits
        ("gpu-short", 10, 7200, True),  # active, but past its maximum age
        ("small", 10, 10**6, False),  # no maximum age
        ("retired", 600, 600, True),  # a profile the site dropped: the section's limits
    ],
)
def test_the_culler_uses_the_servers_profile(profile, idle_s, age_s, culled):
    assert decide(profile, idle_s, age_s) is culled


def test_the_culler_reads_its_limits_from_the_hub(monkeypatch):
    monkeypatch.setenv(
        "KIOSKHUB_CULL_LIMITS", json.dumps({"default_profile": "small", "profiles": LIMITS})
    )
    culler = ProfileIdleCuller()
    culler.initialize(["--timeout=3600"])
    hook = culler.cull_arbiter_hook
    gpu = {"user_options": {"profile": "gpu-short"}, "started": None}
    assert hook(inactive=timedelta(seconds=1800), inactive_limit=3600, server=gpu) is True
    small = {"user_options": {"profile": "small"}, "started": None}
    assert hook(inactive=timedelta(seconds=1800), inactive_limit=3600, server=small) is False
    assert culler.config_file == ""


# --- the warning inside the server ---------------------------------------------------------


def test_a_server_reads_its_limits_from_its_environment():
    environ = {
        "KIOSKHUB_CULL_TIMEOUT": "1800",
        "KIOSKHUB_CULL_MAX_AGE": "0",
        "KIOSKHUB_CULL_WARN": "600",
        "JUPYTERHUB_ACTIVITY_INTERVAL": "300",
    }
    assert CullLimits.from_environ(environ) == CullLimits(1800, 0, 600, 300)
    assert CullLimits.from_environ({}) is None
    assert CullLimits.from_environ({"KIOSKHUB_CULL_TIMEOUT": "soon"}) is None


def test_no_warning_while_far_from_the_timeout():
    limits = CullLimits(timeout=3600, warn_before=600, activity_interval=300)
    state = culling_state(limits, NOW - timedelta(seconds=60), NOW - timedelta(hours=1), NOW)
    assert state == {
        "enabled": True,
        "timeout": 3600,
        "max_age": 0,
        "warn_before": 600,
        "seconds_left": 3240,
        "reason": "idle",
        "warning": None,
        "warning_due": {
            "in_seconds": 2640,
            "text": "Your server has been idle and will be stopped in about 10 minutes. "
            "Save your work; any activity, such as running a cell, keeps it running.",
        },
        "poll_seconds": 30,
    }


def test_the_warning_counts_from_when_the_hub_last_heard_of_activity():
    limits = CullLimits(timeout=3600, warn_before=600, activity_interval=300)
    state = culling_state(limits, NOW - timedelta(seconds=2800), NOW - timedelta(hours=1), NOW)
    assert (state["seconds_left"], state["warning_due"]) == (500, None)
    assert state["warning"] == (
        "Your server has been idle and will be stopped in about 8 minutes. "
        "Save your work; any activity, such as running a cell, keeps it running."
    )


def test_the_maximum_age_warns_even_an_active_server():
    limits = CullLimits(timeout=3600, max_age=7200, warn_before=600)
    state = culling_state(limits, NOW, NOW - timedelta(seconds=7000), NOW)
    assert (state["reason"], state["seconds_left"]) == ("max_age", 200)
    assert state["warning"] == (
        "Your server reaches its maximum running time and will be stopped in about 3 "
        "minutes. Save your work; you can start it again afterwards."
    )


def test_minutes_are_said_plainly():
    assert [minutes_text(s) for s in (20, 60, 100, 600)] == [
        "less than a minute",
        "about 1 minute",
        "about 2 minutes",
        "about 10 minutes",
    ]
