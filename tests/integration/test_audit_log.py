"""The audit log on a real hub: an admin stops, opens and deletes other users' things, sets
a quota override, the real idle culler culls; admins read it all on /hub/audit, through
its API and with ``kioskhub audit``; other users cannot read it or set overrides."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner import usage_store
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.integration.test_dask_gateway import wait_until
from tests.integration.test_idle_culling import started
from tests.support.hub_process import VENV_BIN, kioskhub_env, start_hub, write_site_config
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "an-admin-password-of-32-characters!"
HOSTILE = '<script>alert("audit")</script>'
BRIEF_TIMEOUT, EVERY = 6, 2


@pytest.fixture(scope="module")
def site():
    folder = open_folder("audit")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        auth={"admin_password": ADMIN_PASSWORD},
        profiles=[
            {"name": "small", "cpu": 1, "memory": "1Gi", "default": True},
            {"name": "brief", "cpu": 1, "memory": "1Gi"},
        ],
        culling={
            "enabled": True,
            "timeout": 3600,
            "every": EVERY,
            "warn_before": 2,
            "profiles": [{"name": "brief", "timeout": BRIEF_TIMEOUT}],
        },
    )
    hub = start_hub(config, folder / "hub.log")
    admin = signed_in(hub.url, "admin", ADMIN_PASSWORD)
    yield {"hub": hub, "folder": folder, "config": config, "admin": admin}
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def running(site, name: str) -> bool:
    return bool(site["admin"].api(f"/users/{name}").json()["servers"])


def audit_entries(site, **params) -> list[dict]:
    reply = site["admin"].api("/audit", params=params)
    assert reply.status_code == 200, reply.text
    return reply.json()["entries"]


def wait_for_entry(site, **wanted) -> dict:
    found: list[dict] = []

    def there() -> bool:
        found[:] = [e for e in audit_entries(site) if all(e[k] == v for k, v in wanted.items())]
        return bool(found)

    wait_until(there, 10, f"no audit entry {wanted}")
    return found[0]


def test_an_admin_stopping_and_deleting_other_users_is_logged(site):
    ada = started(site, "ada")
    signed_in(site["hub"].url, "carl", SHARED_PASSWORD)
    admin = site["admin"]

    assert admin.api("/users/ada/server", "DELETE").status_code in (202, 204)
    wait_until(lambda: not running(site, "ada"), 60, "ada's server did not stop")
    assert admin.api("/users/carl", "DELETE").status_code == 204
    assert admin.api("/users/nobody", "DELETE").status_code == 404

    stopped = wait_for_entry(site, action="stop server", target="ada")
    assert (stopped["actor"], stopped["actor_kind"], stopped["detail"]) == (
        "admin",
        "user",
        "server: default",
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stopped["when"])
    wait_for_entry(site, action="delete user", target="carl", actor="admin")
    assert not [e for e in audit_entries(site) if e["target"] == "nobody"]

    # A user stopping their own server is their business, not the audit's.
    ada.spawn()
    ada.stop_server()
    assert [e["actor"] for e in audit_entries(site, user="ada")] == ["admin"]

    page = admin.http.get(f"{site['hub'].url}/hub/audit", params={"user": "ada"})
    assert page.status_code == 200
    assert re.search(r"<td>admin</td>\s*<td>stop server</td>\s*<td>ada</td>", page.text)
    assert "delete user" not in page.text

    printed = kioskhub_audit(site, "--user", "carl")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  admin  delete user  carl\n", printed), (
        printed
    )
    as_json = json.loads(kioskhub_audit(site, "--format", "json", "--since", "2020-01-01"))
    assert {(e["action"], e["target"]) for e in as_json} >= {
        ("stop server", "ada"),
        ("delete user", "carl"),
    }


def test_an_admin_opening_another_users_server_is_logged(site):
    started(site, "dina")
    admin = site["admin"]
    # The server sends the admin to the hub's OAuth authorization, which asks to confirm.
    page = admin.http.get(f"{site['hub'].url}/user/dina/lab")
    assert page.status_code == 200 and "Authorize access" in page.text, page.text[:500]
    assert not [e for e in audit_entries(site, user="dina") if e["action"] == "access server"]
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    confirmed = admin.http.post(page.url, data=fields)
    assert confirmed.status_code == 200, confirmed.text[:500]
    entry = wait_for_entry(site, action="access server", target="dina")
    assert entry["actor"] == "admin"


def test_others_cannot_read_the_audit_log_or_set_overrides(site):
    eve = signed_in(site["hub"].url, "eve", SHARED_PASSWORD)
    eve.request_token()
    page = eve.http.get(f"{site['hub'].url}/hub/audit")
    assert page.status_code == 403
    assert eve.api("/audit").status_code == 403
    assert eve.api("/quota-overrides").status_code == 403
    refused = eve.api("/quota-overrides/eve", "PUT", json={"limits": {"gpus": 8}})
    assert refused.status_code == 403
    assert usage_store.overrides(site["folder"] / "state" / "usage.sqlite", 0) == {}
    anonymous = requests.get(f"{site['hub'].url}/hub/audit", allow_redirects=False, timeout=30)
    assert anonymous.status_code == 302 and "/hub/login" in anonymous.headers["Location"]


def test_a_quota_override_is_stored_audited_and_shown_escaped(site):
    signed_in(site["hub"].url, "fay", SHARED_PASSWORD)
    admin = site["admin"]
    body = {"limits": {"gpus": 2, "memory": "64G"}, "until": "2099-01-01", "reason": HOSTILE}

    reply = admin.api("/quota-overrides/fay", "PUT", json=body)
    assert reply.status_code == 200, reply.text
    stored = usage_store.overrides(site["folder"] / "state" / "usage.sqlite", 0)["fay"]
    assert (json.loads(stored.limits), stored.set_by, stored.reason) == (
        {"gpus": 2, "memory": 64_000_000_000},
        "admin",
        HOSTILE,
    )
    assert admin.api("/quota-overrides").json()["overrides"]["fay"]["until"] == "2099-01-01"
    entry = wait_for_entry(site, action="set quota override", target="fay")
    assert entry["detail"] == (
        'limits: {"gpus": 2, "memory": 64000000000}; until: 2099-01-01; reason: ' + HOSTILE
    )

    bad = admin.api("/quota-overrides/fay", "PUT", json={"limits": {"gpu": 2}})
    assert bad.status_code == 400
    assert bad.json()["message"] == (
        "limits.gpu: unknown key (allowed: servers, cores, memory, gpus, budgets)"
    )
    missing = admin.api("/quota-overrides/nobody", "PUT", json={"limits": {"gpus": 1}})
    assert (missing.status_code, missing.json()["message"]) == (
        404,
        "there is no user 'nobody' on this hub",
    )

    page = admin.http.get(f"{site['hub'].url}/hub/audit").text
    assert HOSTILE not in page
    assert page.count("&lt;script&gt;alert(&#34;audit&#34;)&lt;/script&gt;") == 2

    assert admin.api("/quota-overrides/fay", "DELETE").status_code == 204
    assert usage_store.overrides(site["folder"] / "state" / "usage.sqlite", 0) == {}
    wait_for_entry(site, action="remove quota override", target="fay", actor="admin")


def test_the_culler_culling_a_server_is_counted_and_logged(site):
    gus = started(site, "gus", "brief")
    wait_until(lambda: not running(site, "gus"), 6 * BRIEF_TIMEOUT, "gus was not culled")
    entry = wait_for_entry(site, action="stop server", target="gus")
    assert (entry["actor"], entry["actor_kind"]) == ("idle-culler", "service")
    metrics = gus.http.get(
        f"{site['hub'].url}/hub/metrics",
        headers={"Authorization": f"token {metrics_token(site)}"},
    )
    assert 'kioskhub_servers_culled_total{profile="brief"} 1.0' in metrics.text, metrics.text[
        -2000:
    ]
    assert 'kioskhub_servers_culled_total{profile="small"}' not in metrics.text


def metrics_token(site) -> str:
    return (site["folder"] / "state" / "metrics-token").read_text().strip()


def kioskhub_audit(site, *args: str) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "kioskhub"), "audit", "--config", str(site["config"]), *args],
        capture_output=True,
        text=True,
        env=kioskhub_env(),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_no_request_failed_to_be_audited(site):
    log = site["hub"].log_text()
    assert "could not audit" not in log and "could not write the audit log" not in log
