"""The audit log's store, the quota override bodies it accepts, and its text lines."""

from __future__ import annotations

import os
import stat

import pytest

from kioskhub.hub import audit_log
from kioskhub.hub.audit_cli import text_line
from kioskhub.hub.audit_log import AuditEntry
from kioskhub.hub.quota_override_api import parse_override

NOW = 1_780_000_000.0  # 2026-05-28


def test_entries_newest_first_and_by_user(tmp_path):
    path = audit_log.audit_database(tmp_path / "state")
    audit_log.append(path, AuditEntry(NOW, "admin", "user", "stop server", "bob", "server: x"))
    audit_log.append(path, AuditEntry(NOW + 1, "idle-culler", "service", "stop server", "eve"))
    audit_log.append(path, AuditEntry(NOW + 2, "bob", "user", "delete user", "carl"))

    assert [e.time for e in audit_log.entries(path)] == [NOW + 2, NOW + 1, NOW]
    assert audit_log.entries(path, user="bob") == [
        AuditEntry(NOW + 2, "bob", "user", "delete user", "carl", ""),
        AuditEntry(NOW, "admin", "user", "stop server", "bob", "server: x"),
    ]
    # A service's name is not a user's: only entries about a user named so.
    assert audit_log.entries(path, user="idle-culler") == []
    assert audit_log.entries(path, since=NOW + 1, limit=1)[0].target == "carl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_store_is_not_opened_through_a_symlink(tmp_path):
    (tmp_path / "state").mkdir()
    elsewhere = tmp_path / "elsewhere.sqlite"
    elsewhere.write_text("")
    os.symlink(elsewhere, tmp_path / "state" / "audit.sqlite")

    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        audit_log.append(
            audit_log.audit_database(tmp_path / "state"),
            AuditEntry(NOW, "admin", "user", "delete user", "bob"),
        )
    assert elsewhere.read_text() == ""


def test_a_quota_override_body():
    body = {"limits": {"gpus": 2, "memory": "64G"}, "until": "2026-06-01", "reason": "beamtime"}
    assert parse_override(body, NOW) == (
        {"gpus": 2, "memory": 64_000_000_000},
        1_780_272_000.0,
        "beamtime",
    )
    assert parse_override({"limits": {"servers": 3}, "until": None}, NOW) == (
        {"servers": 3},
        None,
        "",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], 'the body must be a JSON object: {"limits": {...}, "until": ..., ...}'),
        (
            {"limits": {"gpus": 1}, "user": "x"},
            "unknown key 'user'; the keys are limits, until, reason",
        ),
        (
            {"limits": {}},
            'limits: give an object of limits to replace, e.g. {"gpus": 2}; keys: '
            "servers, cores, memory, gpus, budgets",
        ),
        (
            {"limits": {"gpu": 1}},
            "limits.gpu: unknown key (allowed: servers, cores, memory, gpus, budgets)",
        ),
        ({"limits": {"cores": -1}}, "limits.cores: Input should be greater than 0 (got -1)"),
        (
            {"limits": {"budgets": [{"period": "month"}]}},
            'limits.budgets.0: give exactly one of gpu_hours and core_hours (got {"period": '
            '"month"})',
        ),
        (
            {"limits": {"gpus": 1}, "until": "next week"},
            "until: 'next week' is not a day; write YYYY-MM-DD, or null for no end",
        ),
        (
            {"limits": {"gpus": 1}, "until": "2026-05-28"},
            "until: 2026-05-28 has begun; give a later day",
        ),
        ({"limits": {"gpus": 1}, "reason": 7}, "reason: give a text of at most 500 characters"),
    ],
)
def test_a_bad_quota_override_body_names_its_problem(body, message):
    with pytest.raises(ValueError) as raised:
        parse_override(body, NOW)
    assert str(raised.value) == message


def test_a_text_line_shows_control_characters_escaped():
    entry = AuditEntry(NOW, "admin", "user", "set quota override", "bob", "reason: a\n\x1b[2Jb")
    assert text_line(entry) == (
        "2026-05-28 20:26:40  admin  set quota override  bob  reason: a\\n\\x1b[2Jb"
    )
    culler = AuditEntry(NOW, "idle-culler", "service", "stop server", "bob", "server: default")
    assert text_line(culler) == (
        "2026-05-28 20:26:40  idle-culler (service)  stop server  bob  server: default"
    )
