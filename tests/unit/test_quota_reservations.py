"""Reserving a server's usage record where the quotas are checked: atomic across threads,
removed when a start fails, and a spawn refused before any step of the backend runs."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace

import pytest
from tornado import web

from kioskhub.hub.schema.quotas import QuotaSettings
from kioskhub.spawner import usage_store
from kioskhub.spawner.base import SpawnRefused
from kioskhub.spawner.server_quota import reserve_server
from tests.support.kube_cluster import Group, HubUser
from tests.unit.test_metrics import sample, spawns
from tests.unit.test_spawn_contract import FailsAfterSecondCheckpoint, LoopbackBackend, site_for
from tests.unit.test_usage_accounting import at, record

NOW = at("2026-03-15T10:00:00")


def starting(number: int, **changes) -> usage_store.UsageRecord:
    return record(
        record_id=f"r{number}", server_name=f"s{number}", start=NOW, last_seen=NOW, end=None,
        **changes,
    )  # fmt: skip


def reserve_at_once(path, quotas: QuotaSettings, records, is_admin=False):
    """Reserve every record from a thread of its own, all released together."""
    gate = threading.Barrier(len(records))
    results: dict[str, object] = {}

    def one(rec):
        gate.wait()
        results[rec.record_id] = reserve_server(path, quotas, rec, is_admin)

    threads = [threading.Thread(target=one, args=(rec,)) for rec in records]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(records), "a reservation raised instead of deciding"
    return results


def test_only_as_many_reservations_as_the_quota_allows_succeed_at_once(tmp_path):
    path = tmp_path / "usage.sqlite"
    quotas = QuotaSettings.model_validate({"default": {"servers": 3}})
    results = reserve_at_once(path, quotas, [starting(n) for n in range(10)])

    accepted = sorted(key for key, refusal in results.items() if refusal is None)
    assert len(accepted) == 3
    assert {r.quota for r in results.values() if r is not None} == {"quotas.default.servers"}
    assert sorted(r.record_id for r in usage_store.records(path)) == accepted


def test_a_group_limit_holds_across_members_starting_at_once(tmp_path):
    path = tmp_path / "usage.sqlite"
    quotas = QuotaSettings.model_validate({"groups": {"physics": {"gpus": 4}}})
    members = [starting(n, username=f"u{n}", groups="physics", gpu_count=1) for n in range(8)]
    results = reserve_at_once(path, quotas, members)

    assert sum(refusal is None for refusal in results.values()) == 4
    assert sum(r.gpu_count for r in usage_store.records(path)) == 4


def test_without_quotas_every_start_is_reserved(tmp_path):
    path = tmp_path / "usage.sqlite"
    results = reserve_at_once(path, QuotaSettings(), [starting(n) for n in range(5)])
    assert list(results.values()) == [None] * 5
    assert len(usage_store.records(path)) == 5


def test_an_admins_override_in_the_store_raises_one_users_limit(tmp_path):
    path = tmp_path / "usage.sqlite"
    quotas = QuotaSettings.model_validate({"default": {"servers": 1}})
    assert reserve_server(path, quotas, starting(1), False) is None
    assert reserve_server(path, quotas, starting(2), False).quota == "quotas.default.servers"
    usage_store.set_override(
        path,
        usage_store.QuotaOverride("ada", json.dumps({"servers": 2}), NOW + 60, "admin", NOW),
    )
    assert reserve_server(path, quotas, starting(2), False) is None
    expired = replace(starting(3), start=NOW + 120, last_seen=NOW + 120)
    assert reserve_server(path, quotas, expired, False).quota == "quotas.default.servers", (
        "the override ended at NOW + 60"
    )


def test_a_reservation_discarded_or_started(tmp_path):
    path = tmp_path / "usage.sqlite"
    assert reserve_server(path, QuotaSettings(), starting(1), False) is None
    assert reserve_server(path, QuotaSettings(), starting(2), False) is None
    usage_store.discard(path, "r1")
    usage_store.mark_started(path, "r2", NOW + 30)
    (kept,) = usage_store.records(path)
    assert (kept.record_id, kept.start, kept.last_seen, kept.end) == (
        "r2",
        NOW + 30,
        NOW + 30,
        None,
    )


def spawner_with(tmp_path, cls=LoopbackBackend, admin=False, **quotas):
    site = site_for(tmp_path, quotas=quotas)
    user = HubUser("ada", [Group("physics")], admin=admin)
    return cls(user=user, site=site, start_timeout=5)


async def start(spawner):
    await spawner._run_apply_user_options({})
    return await spawner.start()


async def start_and_stop(spawner) -> str:
    """Start, then stop; the id of the record the server had."""
    await start(spawner)
    record_id = spawner.usage.record_id
    await spawner.stop()
    return record_id


def test_a_spawn_over_quota_is_refused_before_any_step_and_counted_as_a_refusal(tmp_path):
    path = tmp_path / "state" / "usage.sqlite"
    usage_store.open_record(path, record(record_id="running", server_name="analysis", end=None))
    refusals = sample("kioskhub_spawn_refusals_total", backend="loopback", reason="quota")
    failures = spawns("failure")
    spawner = spawner_with(tmp_path, default={"servers": 1})

    with pytest.raises(SpawnRefused) as refused:
        asyncio.run(start(spawner))

    assert refused.value.status_code == 403
    assert refused.value.log_message % refused.value.args == (
        "Starting your server would exceed a quota: you may run 1 server at once "
        "(quotas.default.servers); in use now: server 'analysis'; this asks for 1 server. "
        "Stop one of your servers first."
    )
    assert spawner.steps == [], "a step of the backend ran"
    assert [r.record_id for r in usage_store.records(path)] == ["running"]
    assert sample("kioskhub_spawn_refusals_total", backend="loopback", reason="quota") == (
        refusals + 1
    )
    assert spawns("failure") == failures


def test_an_admin_is_exempt_only_with_admins_exempt(tmp_path):
    path = tmp_path / "state" / "usage.sqlite"
    usage_store.open_record(path, record(record_id="running", end=None))

    with pytest.raises(SpawnRefused):
        asyncio.run(start(spawner_with(tmp_path, admin=True, default={"servers": 1})))

    exempt = spawner_with(tmp_path, admin=True, default={"servers": 1}, admins_exempt=True)
    record_id = asyncio.run(start_and_stop(exempt))
    assert record_id in {r.record_id for r in usage_store.records(path)}


def test_a_failed_start_gives_its_reservation_back(tmp_path):
    path = tmp_path / "state" / "usage.sqlite"
    spawner = spawner_with(tmp_path, FailsAfterSecondCheckpoint, default={"servers": 1})

    with pytest.raises(RuntimeError, match="out of quota"):
        asyncio.run(start(spawner))

    assert usage_store.records(path) == [], "the failed start still holds its reservation"
    asyncio.run(start_and_stop(spawner_with(tmp_path, default={"servers": 1})))
    (done,) = usage_store.records(path)
    assert done.end is not None and done.start <= done.end


def test_a_store_that_cannot_be_written_refuses_the_start_when_quotas_are_set(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "usage.sqlite").mkdir()  # not a database
    spawner = spawner_with(tmp_path, default={"servers": 1})

    with pytest.raises(web.HTTPError) as refused:
        asyncio.run(start(spawner))

    assert refused.value.status_code == 500
    assert "Could not check your quotas" in refused.value.log_message % refused.value.args
    assert spawner.steps == []
