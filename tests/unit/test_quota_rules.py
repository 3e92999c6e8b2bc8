"""Quota decisions (spawner/quota_rules.py): which quota refuses a start, and the message."""

from __future__ import annotations

import logging
from dataclasses import replace

from kioskhub.hub.schema.quotas import QuotaLimits, QuotaSettings
from kioskhub.spawner.quota_rules import (
    Demand,
    QuotaRefusal,
    decide,
    override_limits,
    period_end,
    period_start,
    quota_overview,
    records_since,
)
from kioskhub.spawner.usage_store import QuotaOverride
from tests.unit.test_usage_accounting import at, record

NOW = at("2026-03-15T10:00:00")
SERVER = Demand("ada", ("physics",), "server", 2, 4 * 2**30, 1, "Starting your server")
RUNNING = record(record_id="a", end=None, cpu_cores=4, gpu_count=1, groups="physics")


def check(quotas: dict, demand=SERVER, running=(RUNNING,), recent=(), **kwargs):
    kwargs.setdefault("is_admin", False)
    kwargs.setdefault("overrides", {})
    return decide(
        QuotaSettings.model_validate(quotas),
        demand,
        open_records=list(running),
        recent_records=list(recent),
        now=kwargs.pop("now", NOW),
        **kwargs,
    )


def test_a_users_second_server_is_refused_naming_the_quota_and_the_running_server():
    assert check({"default": {"servers": 1}}) == QuotaRefusal(
        "quotas.default.servers",
        "Starting your server would exceed a quota: you may run 1 server at once "
        "(quotas.default.servers); in use now: server 'default'; this asks for 1 server. "
        "Stop one of your servers first.",
    )
    assert check({"default": {"servers": 2}}) is None


def test_cores_count_what_runs_now_and_a_users_entry_replaces_the_default_key_by_key():
    quotas = {"default": {"cores": 5, "gpus": 1}, "users": {"ada": {"cores": 6}}}
    assert check({"default": {"cores": 5}}) == QuotaRefusal(
        "quotas.default.cores",
        "Starting your server would exceed a quota: you may use 5 cores at once "
        "(quotas.default.cores); in use now: server 'default' (4 cores); this asks for "
        "2 cores. Stop a server or a Dask cluster first, or choose a smaller profile.",
    )
    assert check(quotas) == QuotaRefusal(
        "quotas.default.gpus",
        "Starting your server would exceed a quota: you may use 1 GPU at once "
        "(quotas.default.gpus); in use now: server 'default' (1 GPU); this asks for 1 GPU. "
        "Stop a server or a Dask cluster first, or choose a smaller profile.",
    ), "users.ada set cores only: the default's gpus still apply"
    assert check(quotas, running=[record(record_id="a", end=None, cpu_cores=4)]) is None


def test_other_users_records_do_not_count_against_a_users_own_limits():
    bob = record(record_id="b", username="bob", end=None, cpu_cores=16)
    assert check({"default": {"cores": 8}}, running=[bob]) is None


def test_a_group_limit_counts_every_member_and_names_only_the_users_own_servers():
    bob = record(record_id="b", username="bob", groups="physics", end=None, gpu_count=2)
    cy = record(record_id="c", username="cy", groups="physics,optics", end=None, gpu_count=1)
    outsider = record(record_id="d", username="dan", groups="optics", end=None, gpu_count=4)
    refusal = check({"groups": {"physics": {"gpus": 4}}}, running=[RUNNING, bob, cy, outsider])
    assert refusal == QuotaRefusal(
        "quotas.groups.physics.gpus",
        "Starting your server would exceed a quota: the group physics may use 4 GPUs at once "
        "(quotas.groups.physics.gpus); in use now: server 'default' (1 GPU), 3 GPUs by 2 "
        "other members of physics; this asks for 1 GPU. Stop a server or a Dask cluster "
        "first, or choose a smaller profile, or wait until other members of physics stop "
        "theirs.",
    )
    assert "bob" not in refusal.message and "cy" not in refusal.message
    assert check({"groups": {"physics": {"gpus": 5}}}, running=[RUNNING, bob, cy]) is None
    assert check({"groups": {"optics": {"gpus": 1}}}, running=[outsider]) is None, (
        "ada is not in optics: its limit does not apply to her"
    )


def test_memory_is_shown_in_the_units_of_the_profiles():
    refusal = check({"default": {"memory": "5Gi"}})
    assert refusal.quota == "quotas.default.memory"
    assert "you may use 5 GiB at once" in refusal.message
    assert "in use now: server 'default' (2 GiB); this asks for 4 GiB." in refusal.message


def test_a_spent_budget_counts_only_this_month_and_says_when_it_renews():
    across = record(
        record_id="s", gpu_count=2, start=at("2026-02-27T00:00:00"), end=at("2026-03-04T00:00:00")
    )
    quotas = {"default": {"budgets": [{"gpu_hours": 100}]}}
    assert check(quotas, running=[], recent=[across]) == QuotaRefusal(
        "quotas.default.budgets[0]",
        "Starting your server would exceed a budget: your budget of 100 GPU-hours per month "
        "(quotas.default.budgets[0]) is spent, 144.0 GPU-hours used since 2026-03-01. It "
        "renews on 2026-04-01 00:00 UTC. Until then, choose a profile without GPUs, or ask "
        "an admin.",
    ), "2 GPUs x 3 days of March = 144 GPU-hours; February's 2 days do not count"
    assert check(quotas, running=[], recent=[across], now=at("2026-04-01T00:00:01")) is None
    cpu_only = Demand("ada", ("physics",), "server", 1, 2**30, 0, "Starting your server")
    assert check(quotas, cpu_only, running=[], recent=[across]) is None, (
        "a GPU budget does not stop a server without GPUs"
    )


def test_an_open_record_counts_up_to_now_in_a_weekly_group_budget():
    monday = at("2026-03-09T00:00:00")
    bob = record(record_id="b", username="bob", groups="physics", start=monday, end=None)
    quotas = {"groups": {"physics": {"budgets": [{"core_hours": 200, "period": "week"}]}}}
    refusal = check(quotas, running=[bob], recent=[bob])
    assert refusal == QuotaRefusal(
        "quotas.groups.physics.budgets[0]",
        "Starting your server would exceed a budget: the physics group's budget of 200 "
        "core-hours per week (quotas.groups.physics.budgets[0]) is spent, 231.0 core-hours "
        "used since 2026-03-09. It renews on 2026-03-16 00:00 UTC. Until then, ask an admin.",
    ), "bob's 1.5 cores x 154 hours since Monday"


def test_periods_start_and_end_on_calendar_boundaries_in_utc():
    assert period_start("day", NOW) == at("2026-03-15T00:00:00")
    assert period_start("week", NOW) == at("2026-03-09T00:00:00")
    assert period_end("week", NOW) == at("2026-03-16T00:00:00")
    assert period_end("month", at("2026-12-31T23:59:00")) == at("2027-01-01T00:00:00")
    quotas = QuotaSettings.model_validate(
        {"groups": {"physics": {"budgets": [{"gpu_hours": 1, "period": "day"}]}}}
    )
    overrides = {"ada": QuotaLimits.model_validate({"budgets": [{"gpu_hours": 5}]})}
    assert records_since(quotas, {}, NOW) == at("2026-03-15T00:00:00")
    assert records_since(quotas, overrides, NOW) == at("2026-03-01T00:00:00")


def test_admins_are_exempt_only_when_the_site_says_so():
    assert check({"default": {"servers": 1}}, is_admin=True).quota == "quotas.default.servers"
    assert check({"default": {"servers": 1}, "admins_exempt": True}, is_admin=True) is None
    assert check({"default": {"servers": 1}, "admins_exempt": True}).quota == (
        "quotas.default.servers"
    ), "admins_exempt does not exempt users who are not admins"


def test_an_admins_override_replaces_the_keys_it_sets_and_is_named_in_the_message():
    raised = {"ada": QuotaLimits(servers=2)}
    lowered = {"ada": QuotaLimits(gpus=0)}
    assert check({"default": {"servers": 1}}, overrides=raised) is None
    assert check({"default": {"servers": 1}}, overrides={"bob": QuotaLimits(servers=2)}) == (
        check({"default": {"servers": 1}})
    )
    assert check({"default": {"servers": 2}}, overrides=lowered) == QuotaRefusal(
        "an admin's override",
        "Starting your server would exceed a quota: you may use 0 GPUs at once (an admin's "
        "override); in use now: server 'default' (1 GPU); this asks for 1 GPU. Stop a server "
        "or a Dask cluster first, or choose a smaller profile.",
    )


def test_an_override_that_does_not_parse_is_left_out_and_logged(caplog):
    def override(limits: str) -> QuotaOverride:
        return QuotaOverride("ada", limits, None, "admin", NOW)

    with caplog.at_level(logging.ERROR):
        parsed = override_limits(
            {"ada": override('{"servers": 3}'), "bob": override('{"servers": -1}')},
            logging.getLogger("test"),
        )
    assert parsed == {"ada": QuotaLimits(servers=3)}
    assert "Ignoring the quota override of bob" in caplog.text


def test_the_spawn_form_line_shows_the_users_and_their_groups_quotas():
    quotas = QuotaSettings.model_validate(
        {
            "default": {"servers": 2, "cores": 8, "memory": "16Gi"},
            "users": {"ada": {"budgets": [{"gpu_hours": 100}]}},
            "groups": {"physics": {"gpus": 4}, "optics": {"gpus": 1}},
        }
    )
    bob = record(record_id="b", username="bob", groups="physics", end=None, gpu_count=2)
    earlier = record(
        record_id="e", gpu_count=1, start=at("2026-03-14T00:00:00"), end=at("2026-03-14T12:30:00")
    )
    records = [replace(RUNNING, start=at("2026-03-15T09:00:00")), bob, earlier]

    assert quota_overview(quotas, ("ada", ("physics",)), False, None, records, NOW) == (
        "Your quota: 1 of 2 servers, 4 of 8 cores, 2 GiB of 16 GiB, 13.5 of 100 GPU-hours "
        "this month in use; the group physics: 3 of 4 GPUs in use."
    ), "ada's GPU for the last hour and 12.5 GPU-hours yesterday; bob's GPUs count for physics"
    assert quota_overview(quotas, ("cy", ()), False, QuotaLimits(servers=5), [], NOW) == (
        "Your quota: 0 of 5 servers, 0 of 8 cores, 0 of 16 GiB in use."
    )
    exempt = quotas.model_copy(update={"admins_exempt": True})
    assert quota_overview(exempt, ("ada", ()), True, None, records, NOW) == ""
    assert quota_overview(QuotaSettings(), ("ada", ()), False, None, records, NOW) == ""
