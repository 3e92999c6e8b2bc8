"""Bad ``quotas:`` sections and what the real ``kioskhub check-config`` answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_config_errors import EXIT_CONFIG_ERROR, kioskhub

PROFILES = """
profiles:
  - {name: small, default: true}
  - {name: a100x4, cpu: 8, memory: 64G, gpu: {count: 4}}
  - {name: wide, cpu: 16, groups: [physics]}
"""


def check_config(tmp_path: Path, text: str):
    config = tmp_path / "kioskhub.yaml"
    config.write_text("hub: {state_dir: state}\n" + text, encoding="utf-8")
    result = kioskhub("check-config", "--config", str(config), cwd=tmp_path)
    assert "Traceback" not in result.stdout + result.stderr
    return config, result


def test_every_problem_of_a_quotas_section_is_named_on_a_line_of_its_own(tmp_path):
    config, result = check_config(
        tmp_path,
        PROFILES
        + """
accounting: {enabled: false}
quotas:
  default: {gpus: 2}
  users: {root: {gpus: 8}, Ada: {cores: 4}}
  groups: {physics: {cores: 8}}
""",
    )
    assert result.returncode == EXIT_CONFIG_ERROR
    assert result.stderr.splitlines() == [
        f"kioskhub: {config}: 1 problem(s) in the site config:",
        "  (top level): quotas: quotas count the usage records, but accounting.enabled is "
        "false; turn accounting on, or remove the quotas section",
        "  quotas.users.root: not a user's name (the username 'root' is reserved for KioskHub "
        "or the system); give the hub username of the user the limits are for",
        "  quotas.users.Ada: not a user's name (invalid username 'Ada': use 1–29 characters "
        "of lowercase letters, digits, '.', '_' or '-', starting with a letter or digit); give "
        "the hub username of the user the limits are for",
        "  profiles.a100x4: asks for 4 GPUs, more than quotas.default.gpus allows (2 GPUs), "
        "and no quotas.users entry allows more: no one could start it; raise the limit, give "
        "the users who need it a limit of their own under quotas.users, or remove the profile",
        "  profiles.wide: asks for 16 cores, more than quotas.groups.<group>.cores allows for "
        "every group that may use it (physics): no one could start it; raise those limits",
    ], "root's 8 GPUs do not count: root can never sign in"


def test_a_profile_beyond_the_default_is_refused_unless_a_user_may_start_it(tmp_path):
    _, refused = check_config(tmp_path, PROFILES + "quotas: {default: {gpus: 2, memory: 32G}}\n")
    assert refused.returncode == EXIT_CONFIG_ERROR
    assert refused.stderr.splitlines()[1:] == [
        "  (top level): profiles.a100x4: asks for 64 GB of memory, more than "
        "quotas.default.memory allows (32 GB of memory), and no quotas.users entry allows "
        "more: no one could start it; raise the limit, give the users who need it a limit of "
        "their own under quotas.users, or remove the profile",
        "  profiles.a100x4: asks for 4 GPUs, more than quotas.default.gpus allows (2 GPUs), "
        "and no quotas.users entry allows more: no one could start it; raise the limit, give "
        "the users who need it a limit of their own under quotas.users, or remove the profile",
    ]

    _, accepted = check_config(
        tmp_path,
        PROFILES + "quotas:\n  default: {servers: 0, gpus: 2, memory: 32G}\n"
        "  users: {ada: {servers: 1, gpus: 4, memory: 64G}}\n",
    )
    assert accepted.returncode == 0, accepted.stderr
    assert (
        "  quotas:       default 0 servers, 2 gpus, 32 GB memory; 1 user and 0 group entries; "
        "admins not exempt\n"
    ) in accepted.stdout


@pytest.mark.parametrize(
    ("quotas", "expected"),
    [
        ("{default: {cores: 0}}", "  quotas.default.cores: Input should be greater than 0 (got 0)"),
        (
            "{groups: {physics: {servers: -1}}}",
            "  quotas.groups.physics.servers: Input should be greater than or equal to 0 (got -1)",
        ),
        (
            "{default: {budgets: [{gpu_hours: 10, core_hours: 5}]}}",
            "  quotas.default.budgets[0]: give exactly one of gpu_hours and core_hours",
        ),
        (
            "{users: {ada: {budgets: [{gpu_hours: 10, period: year}]}}}",
            "  quotas.users.ada.budgets[0].period: Input should be 'day', 'week' or 'month' "
            "(got 'year')",
        ),
        (
            "{default: {servers: 0}}",
            "  (top level): quotas.default.servers: is 0 and no quotas.users entry allows a "
            "server: no one could start one; raise it, or give the users who may start servers "
            "their own",
        ),
        (
            "{default: {gpu: 1}}",
            "  quotas.default.gpu: unknown key (allowed here: servers, cores, memory, gpus, "
            "budgets); did you mean 'gpus'?",
        ),
    ],
)
def test_a_wrong_value_names_its_key_path(tmp_path, quotas, expected):
    _, result = check_config(tmp_path, f"quotas: {quotas}\n")
    assert result.returncode == EXIT_CONFIG_ERROR
    assert result.stderr.splitlines()[1:] == [expected]
