"""Bad site configs, each with the exit code and the message the real `kioskhub` CLI gives.

Every case runs the installed command in a subprocess from a folder other than the config's,
as a site admin would. A config mistake exits with status 2 and one message on stderr that
names the file and the key path (or, for a file that is not valid YAML, the line and column),
says what was expected, and never shows a Python traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from kioskhub.hub.schema.site import HubSettings

KIOSKHUB = Path(sys.executable).parent / "kioskhub"
EXIT_CONFIG_ERROR = 2

MISSING_FILE = "<no file at the config path>"
DIRECTORY = "<a folder at the config path>"
NAME_TOO_LONG = "<a config file name longer than the system allows>"
SPECIAL_CASES = (MISSING_FILE, DIRECTORY, NAME_TOO_LONG)


@dataclass(frozen=True)
class BadConfig:
    """One row of the table: what the file holds and what `check-config` must answer."""

    content: str | bytes
    exit_code: int
    key: str | None
    expected: tuple[str, ...]
    not_shown: tuple[str, ...] = ()


CASES = {
    "unknown top-level key": BadConfig(
        "hubb:\n  url: http://127.0.0.1:8000\n",
        EXIT_CONFIG_ERROR,
        "hubb",
        ("unknown key (allowed here: hub, auth, spawner,", "did you mean 'hub'?"),
    ),
    "unknown nested key": BadConfig(
        "hub:\n  urll: http://127.0.0.1:8000\n",
        EXIT_CONFIG_ERROR,
        "hub.urll",
        ("unknown key (allowed here: url, state_dir, admin_users,", "did you mean 'url'?"),
    ),
    "unknown key in a list item": BadConfig(
        "data_mounts:\n  - name: data\n    sorce: data\n",
        EXIT_CONFIG_ERROR,
        "data_mounts[0].sorce",
        ("unknown key", "did you mean 'source'?"),
    ),
    "wrong type": BadConfig(
        "hub:\n  internal_ports:\n    hub: abc\n",
        EXIT_CONFIG_ERROR,
        "hub.internal_ports.hub",
        ("Input should be a valid integer", "(got 'abc')"),
    ),
    "bad url": BadConfig(
        "hub:\n  url: ftp://x\n",
        EXIT_CONFIG_ERROR,
        "hub.url",
        ("expected a URL like http://127.0.0.1:8000 (scheme, host, port)",),
    ),
    "shared password too short, and not echoed": BadConfig(
        "auth:\n  shared_password: hunter2\n",
        EXIT_CONFIG_ERROR,
        "auth.shared_password",
        ("String should have at least 8 characters", "(got a value that is not shown)"),
        not_shown=("hunter2",),
    ),
    "invalid admin username": BadConfig(
        "hub:\n  admin_users: [admin, Bad User]\n",
        EXIT_CONFIG_ERROR,
        "hub.admin_users",
        ("invalid username 'Bad User'", "lowercase letters, digits"),
    ),
    "reserved admin username": BadConfig(
        "hub:\n  admin_users: [admin, build]\n",
        EXIT_CONFIG_ERROR,
        "hub.admin_users",
        ("the username 'build' is reserved for KioskHub or the system",),
    ),
    "start timeout below the minimum": BadConfig(
        "spawner:\n  start_timeout: 1\n",
        EXIT_CONFIG_ERROR,
        "spawner.start_timeout",
        ("Input should be greater than or equal to 5 (got 1)",),
    ),
    "data mount source folder missing": BadConfig(
        "data_mounts:\n  - name: data\n    source: missing-folder\n",
        EXIT_CONFIG_ERROR,
        "data_mounts[0]",
        ("source folder", "missing-folder does not exist", "`kioskhub init`"),
    ),
    "duplicate mount names": BadConfig(
        "data_mounts:\n"
        "  - {name: data, source: data, mount_path: /data}\n"
        "  - {name: data, source: data, mount_path: /more-data}\n",
        EXIT_CONFIG_ERROR,
        "data_mounts",
        ("names must be unique; repeated: data",),
    ),
    "section without keys": BadConfig(
        "hub:\nauth:\n  shared_password: correct-horse\n",
        EXIT_CONFIG_ERROR,
        "hub",
        ("is empty: indent keys below it, or remove the line",),
    ),
    "section given a value": BadConfig(
        "hub: 5\n",
        EXIT_CONFIG_ERROR,
        "hub",
        ("expected a section (key: value lines indented below it), got 5",),
    ),
    "one name where a list is expected": BadConfig(
        "hub:\n  admin_users: admin\n",
        EXIT_CONFIG_ERROR,
        "hub.admin_users",
        ("expected a list ([a, b] or one '- item' per line), got 'admin'",),
    ),
    "two problems at once": BadConfig(
        "hub:\n  urll: http://127.0.0.1:8000\nspawner:\n  start_timeout: 1\n",
        EXIT_CONFIG_ERROR,
        "spawner.start_timeout",
        ("2 problem(s) in the site config", "\n  hub.urll: unknown key"),
    ),
    "yaml syntax error": BadConfig(
        "hub:\n url: http://127.0.0.1:8000\n  log_level: INFO\n",
        EXIT_CONFIG_ERROR,
        None,
        ("line 3, column 12: not valid YAML: mapping values are not allowed here",),
    ),
    "key given twice": BadConfig(
        "hub:\n  url: http://127.0.0.1:8000\n  url: http://127.0.0.1:9000\n",
        EXIT_CONFIG_ERROR,
        None,
        ("line 3, column 3: not valid YAML: key 'url' appears twice", "first on line 2"),
    ),
    "top level is a list": BadConfig(
        "- hub\n- auth\n",
        EXIT_CONFIG_ERROR,
        None,
        ("expected a mapping of sections (hub:, auth:, ...) at the top level, got list",),
    ),
    "not utf-8": BadConfig(
        b"hub:\n  url: \xff\n",
        EXIT_CONFIG_ERROR,
        None,
        ("line 2, column 8: not UTF-8 text (byte 0xff); save the file as UTF-8.",),
    ),
    "missing file": BadConfig(
        MISSING_FILE,
        EXIT_CONFIG_ERROR,
        None,
        ("file not found. Run `kioskhub init --config", "to write a commented default"),
    ),
    "a folder, not a file": BadConfig(
        DIRECTORY, EXIT_CONFIG_ERROR, None, ("is not a file; pass --config with a YAML file",)
    ),
    "file name too long": BadConfig(
        NAME_TOO_LONG, EXIT_CONFIG_ERROR, None, ("cannot be read: File name too long",)
    ),
    "empty file is a valid site": BadConfig("", 0, None, ("valid",)),
}


@pytest.fixture
def site(tmp_path):
    """A site folder with a data folder, and another folder to run the command from."""
    (tmp_path / "site" / "data").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return tmp_path.resolve() / "site"


def write_config(site: Path, content: str | bytes) -> Path:
    """Put ``content`` (or a special case) at a config path in ``site``; return that path."""
    path = site / "kioskhub.yaml"
    if content == NAME_TOO_LONG:
        return site / ("k" * 300 + ".yaml")
    if content == MISSING_FILE:
        return path
    if content == DIRECTORY:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def kioskhub(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "KIOSKHUB_CONFIG"}
    return subprocess.run(
        [str(KIOSKHUB), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_check_config(case: BadConfig, site: Path):
    config = write_config(site, case.content)

    result = kioskhub("check-config", "--config", str(config), cwd=site.parent / "elsewhere")

    assert result.returncode == case.exit_code, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    if case.exit_code == 0:
        assert result.stderr == ""
        assert result.stdout.startswith(f"{config}: valid\n")
        return
    assert result.stdout == ""
    assert result.stderr.startswith(f"kioskhub: {config}")
    if case.key is not None:
        assert f"\n  {case.key}: " in result.stderr
    for expected in case.expected:
        assert expected in result.stderr
    for secret in case.not_shown:
        assert secret not in result.stderr


def test_each_problem_is_one_plain_line(site: Path):
    """The whole message, literally: no pydantic URLs, no 'For further information'."""
    config = write_config(site, CASES["two problems at once"].content)

    result = kioskhub("check-config", "--config", str(config), cwd=site.parent / "elsewhere")

    hub_keys = ", ".join(HubSettings.model_fields)
    assert result.stderr.splitlines() == [
        f"kioskhub: {config}: 2 problem(s) in the site config:",
        f"  hub.urll: unknown key (allowed here: {hub_keys}); did you mean 'url'?",
        "  spawner.start_timeout: Input should be greater than or equal to 5 (got 1)",
    ]


def test_up_refuses_a_bad_config_before_starting_anything(site: Path):
    config = write_config(site, CASES["unknown nested key"].content)
    elsewhere = site.parent / "elsewhere"

    checked = kioskhub("check-config", "--config", str(config), cwd=elsewhere)
    started = kioskhub("up", "--config", str(config), cwd=elsewhere)

    assert started.returncode == EXIT_CONFIG_ERROR
    assert started.stderr == checked.stderr
    assert "Traceback" not in started.stdout + started.stderr
    assert not (site / ".kioskhub").exists()


def test_init_writes_a_config_that_check_config_accepts(site: Path):
    config = site / "new" / "kioskhub.yaml"
    elsewhere = site.parent / "elsewhere"

    written = kioskhub("init", "--config", str(config), cwd=elsewhere)
    checked = kioskhub("check-config", "--config", str(config), cwd=elsewhere)

    assert written.returncode == 0, written.stderr
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""
    folder = config.parent
    lines = checked.stdout.splitlines()
    assert lines[0] == f"{config}: valid"
    for line in [
        "  url:          http://127.0.0.1:8000",
        f"  state folder: {folder}/.kioskhub",
        "  sign-in:      shared-password; admins: admin",
        "  backend:      local",
        f"  homes:        {folder}/.kioskhub/homes",
        f"  data mounts:  data ({folder}/.kioskhub/sample-data → /data, read-only)",
    ]:
        assert line in lines
    assert list(elsewhere.iterdir()) == []
