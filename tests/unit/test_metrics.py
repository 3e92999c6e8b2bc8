"""KioskHub's spawn metrics and who may read them, through the spawn contract's loopback
backends (tests/unit/test_spawn_contract.py) and the default registry JupyterHub serves."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest
from prometheus_client import REGISTRY, generate_latest
from tornado import web

from kioskhub.hub.metrics_access import metrics_hub_settings, prepare_metrics_token
from kioskhub.spawner import metrics
from tests.unit.test_spawn_contract import (
    FailsAfterSecondCheckpoint,
    LoopbackBackend,
    backend,
    spawn,
)


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def spawns(result: str) -> float:
    return sample("kioskhub_spawns_total", backend="loopback", profile="small", result=result)


def running() -> float:
    return sample("kioskhub_servers_running", backend="loopback", profile="small")


def test_a_successful_start_is_counted_timed_and_running_until_stopped(tmp_path):
    before = spawns("success"), running()
    timed = sample(
        "kioskhub_spawn_duration_seconds_count",
        backend="loopback",
        profile="small",
        result="success",
    )

    async def scenario():
        spawner = backend(LoopbackBackend, tmp_path)
        await spawn(spawner)
        while_running = running()
        await spawner.poll()
        await spawner.stop()
        await spawner.poll()  # gone: counted out once only
        return while_running

    while_running = asyncio.run(scenario())

    assert spawns("success") == before[0] + 1
    assert while_running == before[1] + 1
    assert running() == before[1]
    assert (
        sample(
            "kioskhub_spawn_duration_seconds_count",
            backend="loopback",
            profile="small",
            result="success",
        )
        == timed + 1
    )


def test_a_start_that_fails_is_a_failed_spawn_and_not_running(tmp_path):
    before = spawns("failure"), running()

    async def scenario():
        spawner = backend(FailsAfterSecondCheckpoint, tmp_path)
        with pytest.raises(RuntimeError):
            await spawn(spawner)

    asyncio.run(scenario())

    assert spawns("failure") == before[0] + 1
    assert running() == before[1]


def test_a_refused_choice_is_a_refusal_not_a_failed_spawn(tmp_path):
    refusals = sample("kioskhub_spawn_refusals_total", backend="loopback", reason="choice")
    failures = spawns("failure")

    async def scenario():
        spawner = backend(LoopbackBackend, tmp_path, options={"environment": "rstudio"})
        with pytest.raises(web.HTTPError) as refused:
            await spawn(spawner)
        return refused.value.status_code

    assert asyncio.run(scenario()) == 400
    assert sample("kioskhub_spawn_refusals_total", backend="loopback", reason="choice") == (
        refusals + 1
    )
    assert spawns("failure") == failures


def test_a_server_readopted_after_a_restart_counts_as_running_once(tmp_path):
    before = running()
    spawner = backend(LoopbackBackend, tmp_path, options={"profile": "small"})
    state = {"kioskhub": {"version": 1, "launch": {"port": 9}, "gpus": "", "summary": ""}}

    spawner.load_state(state)
    spawner.running_metric.running("loopback", "small", 0)  # reported again: no change
    after_load = running()
    spawner.exit_status = 0  # the server has gone
    asyncio.run(spawner.poll())
    asyncio.run(spawner.poll())

    assert after_load == before + 1
    assert running() == before


def test_gpus_are_counted_while_allocated():
    before = sample("kioskhub_gpus_allocated", backend="local")
    server = metrics.RunningServer()

    server.running("local", "a100", 2)
    allocated = sample("kioskhub_gpus_allocated", backend="local")
    server.gone()

    assert allocated == before + 2
    assert sample("kioskhub_gpus_allocated", backend="local") == before


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.record_spawn("local", "small", "crashed", 1.0), "unknown spawn result"),
        (lambda: metrics.record_refusal("local", "Unknown environment 'x'"), "unknown refusal"),
    ],
)
def test_labels_take_only_their_fixed_values(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_an_empty_name_is_a_label_none():
    assert metrics.metric_label("") == "none"
    assert metrics.metric_label("small") == "small"


def test_the_hub_serves_kioskhub_metrics_with_their_help():
    metrics.record_refusal("local", "quota")
    text = generate_latest(REGISTRY).decode()

    assert "# HELP kioskhub_spawns_total Server starts that got past the choice" in text
    assert 'kioskhub_spawn_refusals_total{backend="local",reason="quota"}' in text
    assert "# TYPE kioskhub_servers_running gauge" in text


def test_prometheus_gets_a_token_with_read_metrics_alone():
    assert metrics_hub_settings("t" * 64) == {
        "JupyterHub": {
            "authenticate_prometheus": True,
            "services": [{"name": "prometheus", "api_token": "t" * 64}],
            "load_roles": [
                {
                    "name": "kioskhub-metrics",
                    "description": "Prometheus: read the hub's metrics, nothing else",
                    "services": ["prometheus"],
                    "scopes": ["read:metrics"],
                }
            ],
        }
    }
    assert metrics_hub_settings("") == {"JupyterHub": {"authenticate_prometheus": True}}


def test_the_metrics_token_is_made_once_and_readable_by_root_alone(tmp_path):
    first = prepare_metrics_token(tmp_path)

    assert prepare_metrics_token(tmp_path) == first
    assert len(first) == 64 and int(first, 16)
    assert stat.S_IMODE((tmp_path / "metrics-token").stat().st_mode) == 0o600


def test_the_metrics_token_file_is_never_followed_through_a_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not a token\n")
    os.symlink(elsewhere, tmp_path / "metrics-token")

    with pytest.raises(OSError):
        prepare_metrics_token(tmp_path)
    assert elsewhere.read_text() == "not a token\n"
