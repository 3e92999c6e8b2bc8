"""Webhook payloads (GitLab's documented shapes) and the secret-token check, pure."""

from __future__ import annotations

import asyncio

import pytest

from kioskhub.image_builder.gitlab_webhook import (
    JobEvent,
    PipelineEvent,
    PipelineEventBus,
    WebhookPayloadError,
    parse_event,
    token_matches,
)

PIPELINE_HOOK = {
    "object_kind": "pipeline",
    "object_attributes": {
        "id": 31,
        "iid": 3,
        "ref": "main",
        "tag": False,
        "sha": "bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        "status": "success",
        "detailed_status": "passed",
        "stages": ["build"],
        "created_at": "2016-08-12 15:23:28 UTC",
        "variables": [{"key": "KIOSKHUB_SUBDIR", "value": "."}],
    },
    "user": {"id": 1, "name": "Administrator", "username": "root"},
    "project": {"id": 1, "name": "Gitlab Test", "path_with_namespace": "lab/analysis"},
    "builds": [{"id": 380, "stage": "build", "name": "kioskhub-env", "status": "success"}],
}
JOB_HOOK = {
    "object_kind": "build",
    "ref": "main",
    "sha": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "build_id": 1977,
    "build_name": "kioskhub-env",
    "build_stage": "build",
    "build_status": "running",
    "pipeline_id": 2366,
    "project_id": 380,
    "project_name": "Lab / Analysis",
}


def test_pipeline_hooks_become_pipeline_events():
    assert parse_event("Pipeline Hook", PIPELINE_HOOK) == PipelineEvent(
        project_id=1,
        pipeline_id=31,
        status="success",
        ref="main",
        sha="bcbb5ec396a2c0f828686f14fac9b80b780504f2",
        project_path="lab/analysis",
    )


def test_job_hooks_become_job_events():
    assert parse_event("Job Hook", JOB_HOOK) == JobEvent(
        project_id=380, pipeline_id=2366, job_id=1977, job_name="kioskhub-env", status="running"
    )


def test_other_events_are_ignored():
    assert parse_event("Push Hook", {"object_kind": "push"}) is None
    assert parse_event("", {}) is None


@pytest.mark.parametrize(
    "event, payload",
    [
        ("Pipeline Hook", []),
        ("Pipeline Hook", {**PIPELINE_HOOK, "object_kind": "build"}),
        ("Pipeline Hook", {**PIPELINE_HOOK, "project": {"id": "1"}}),
        ("Pipeline Hook", {**PIPELINE_HOOK, "project": {"id": True}}),
        ("Pipeline Hook", {**PIPELINE_HOOK, "object_attributes": {"id": 31, "status": ""}}),
        ("Pipeline Hook", {**PIPELINE_HOOK, "object_attributes": {"id": -1, "status": "x"}}),
        ("Job Hook", {**JOB_HOOK, "pipeline_id": None}),
        ("Job Hook", {**JOB_HOOK, "build_status": "x" * 65}),
        ("Job Hook", {**JOB_HOOK, "object_kind": "pipeline"}),
    ],
)
def test_malformed_payloads_are_refused(event, payload):
    with pytest.raises(WebhookPayloadError):
        parse_event(event, payload)


def test_the_token_must_equal_the_secret():
    secret = "s" * 32

    assert token_matches(secret, secret)
    assert not token_matches(secret[:-1], secret)
    assert not token_matches(secret + "x", secret)
    assert not token_matches(None, secret)
    assert not token_matches("", secret)
    assert not token_matches("é" * 16, secret)


def test_without_a_configured_secret_nothing_matches():
    assert not token_matches("", None)
    assert not token_matches("", "")
    assert not token_matches("anything", None)


def test_the_bus_wakes_only_the_followers_of_that_pipeline():
    async def scenario():
        bus = PipelineEventBus()
        with bus.subscribe(1, 31) as followed, bus.subscribe(1, 32) as other:
            woken = bus.publish(parse_event("Pipeline Hook", PIPELINE_HOOK))
            assert (woken, followed.is_set(), other.is_set()) == (1, True, False)
        assert bus.publish(parse_event("Pipeline Hook", PIPELINE_HOOK)) == 0
        assert bus.received == 2

    asyncio.run(scenario())
