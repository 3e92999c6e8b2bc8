"""The admin usage report in a real hub: the page /hub/usage and GET /hub/api/usage, for
admins (and tokens with ``admin:users``) only, over records written into the store."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from kioskhub.spawner import usage_store
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import remove_site_folder, start_hub, write_site_config
from tests.support.user_session import signed_in

pytestmark = pytest.mark.integration

ADMIN_PASSWORD = "an-admin-password-of-32-characters!"
HOSTILE = '<script>alert("kh")</script>'
PERIOD = "since=2025-10-01&until=2025-12-01"
HOUR = 3600.0
GIB = 2**30


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def write_records(path) -> None:
    """ada: a GPU server across the October/November boundary, in a hostile group and
    profile; bob: a server still open since 30 November 20:00 (counts up to the period's
    end); cy: a server of September (outside the period)."""
    common = dict(
        server_name="",
        backend="local",
        environment="default",
        environment_ref="/opt/venvs/default",
        memory_requested=4 * GIB,
    )
    rows = [
        dict(record_id="r1", username="ada", groups=f"physics,{HOSTILE}", profile=HOSTILE,
             cpu_cores=2.0, gpu_count=1, start=at("2025-10-31T22:00:00"),
             last_seen=at("2025-11-01T02:00:00"), end=at("2025-11-01T02:00:00"),
             cpu_seconds=4 * HOUR, memory_peak=3 * GIB),
        dict(record_id="r2", username="bob", groups="physics", profile="small", cpu_cores=1.0,
             gpu_count=0, start=at("2025-11-30T20:00:00"), last_seen=at("2025-11-30T22:00:00"),
             end=None, cpu_seconds=HOUR, memory_peak=GIB),
        dict(record_id="r3", username="cy", groups="", profile="small", cpu_cores=1.0,
             gpu_count=0, start=at("2025-09-01T00:00:00"), last_seen=at("2025-09-02T00:00:00"),
             end=at("2025-09-02T00:00:00"), cpu_seconds=HOUR, memory_peak=GIB),
    ]  # fmt: skip
    for row in rows:
        usage_store.open_record(path, usage_store.UsageRecord(**common, **row))


@pytest.fixture(scope="module")
def report_hub():
    folder = open_folder("usage-report")
    write_sample_data(folder / "data")
    config = write_site_config(folder, auth={"admin_password": ADMIN_PASSWORD})
    hub = start_hub(config, folder / "hub.log")
    try:
        write_records(folder / "state" / "usage.sqlite")
        yield hub
    finally:
        hub.stop()
        remove_site_folder(folder)


def test_an_admin_sees_the_tables_charts_and_csv_with_hostile_names_escaped(report_hub):
    admin = signed_in(report_hub.url, "admin", ADMIN_PASSWORD)
    page = admin.http.get(f"{report_hub.url}/hub/usage?{PERIOD}", timeout=30)
    assert page.status_code == 200, page.text
    for by in ("user", "group", "profile", "month"):
        assert f'id="kh-usage-table-{by}"' in page.text
    assert page.text.count("<svg") == 4 and 'id="kh-chart-gpu-hours-by-group"' in page.text
    assert 'data-key="ada"' in page.text and 'data-key="bob"' in page.text
    assert 'id="kh-nav-usage"' in page.text, "no link to the report in the navigation bar"
    assert 'data-key="cy"' not in page.text, "a server outside the period is shown"
    assert HOSTILE not in page.text
    assert "&lt;script&gt;alert(&#34;kh&#34;)&lt;/script&gt;" in page.text  # the tables
    assert "&lt;script&gt;alert(&quot;kh&quot;)&lt;/script&gt;" in page.text  # the charts

    link = f"{report_hub.url}/hub/api/usage?{PERIOD}&by=group&format=csv"
    assert f'href="/hub/api/usage?{PERIOD.replace("&", "&amp;")}&amp;by=group' in page.text
    download = admin.http.get(link, timeout=30)
    assert download.status_code == 200, download.text
    assert download.headers["Content-Disposition"] == (
        'attachment; filename="usage-by-group-2025-10-01-2025-12-01.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [(r["group"], r["users"], r["core_hours"], r["gpu_hours"]) for r in rows] == [
        (HOSTILE, "1", "8.0", "4.0"),
        ("physics", "2", "12.0", "4.0"),
    ]


def test_the_api_gives_each_table_as_json_to_a_token_with_admin_users(report_hub):
    admin = signed_in(report_hub.url, "admin", ADMIN_PASSWORD)
    admin.request_token(["admin:users"])
    by_user = admin.api(f"/usage?{PERIOD}&by=user")
    assert by_user.status_code == 200, by_user.text
    assert by_user.json() == {
        "since": "2025-10-01",
        "until": "2025-12-01",
        "by": "user",
        "rows": [
            {"key": "ada", "users": 1, "servers": 1, "dask_clusters": 0, "wall_hours": 4.0,
             "core_hours": 8.0, "cpu_hours": 4.0, "gpu_hours": 4.0, "memory_peak": 3 * GIB},
            {"key": "bob", "users": 1, "servers": 1, "dask_clusters": 0, "wall_hours": 4.0,
             "core_hours": 4.0, "cpu_hours": 1.0, "gpu_hours": 0.0, "memory_peak": GIB},
        ],
        "total": {"key": "total", "users": 2, "servers": 2, "dask_clusters": 0,
                  "wall_hours": 8.0, "core_hours": 12.0, "cpu_hours": 5.0, "gpu_hours": 4.0,
                  "memory_peak": 3 * GIB},
    }  # fmt: skip
    by_month = admin.api(f"/usage?{PERIOD}&by=month").json()["rows"]
    assert [(r["key"], r["servers"], r["wall_hours"]) for r in by_month] == [
        ("2025-10", 1, 2.0),
        ("2025-11", 1, 6.0),
    ]
    by_profile = admin.api(f"/usage?{PERIOD}&by=profile").json()["rows"]
    assert [r["key"] for r in by_profile] == [HOSTILE, "small"]


def test_bad_parameters_get_400_naming_the_parameter_and_its_format(report_hub):
    admin = signed_in(report_hub.url, "admin", ADMIN_PASSWORD)
    bad_day = admin.api("/usage?since=2025/10/01")
    assert bad_day.status_code == 400
    assert bad_day.json()["message"] == "since='2025/10/01' is not a day: write since=YYYY-MM-DD"
    backwards = admin.api("/usage?since=2025-11-01&until=2025-10-01")
    assert backwards.json()["message"] == "until (2025-10-01) must be after since (2025-11-01)"
    assert admin.api("/usage?by=colour").json()["message"] == (
        "by='colour': choose one of user, group, profile, month"
    )
    page = admin.http.get(f"{report_hub.url}/hub/usage?until=soon", timeout=30)
    assert page.status_code == 400 and "until=&#39;soon&#39; is not a day" in page.text


def test_users_and_tokens_without_admin_users_are_refused(report_hub):
    ada = signed_in(report_hub.url, "ada", SHARED_PASSWORD)
    page = ada.http.get(f"{report_hub.url}/hub/usage?{PERIOD}", timeout=30)
    assert page.status_code == 403 and "kh-usage-table" not in page.text
    home = ada.http.get(f"{report_hub.url}/hub/home", timeout=30)
    assert home.status_code == 200 and 'id="kh-nav-usage"' not in home.text
    refused = ada.api(f"/usage?{PERIOD}")
    assert refused.status_code == 403
    assert "admin:users" in refused.json()["message"]
    assert "rows" not in refused.json()

    admin = signed_in(report_hub.url, "admin", ADMIN_PASSWORD)
    admin.request_token(["read:users"])
    assert admin.api(f"/usage?{PERIOD}").status_code == 403, "a token without admin:users"

    anonymous = requests.get(f"{report_hub.url}/hub/usage", timeout=30, allow_redirects=False)
    assert anonymous.status_code == 302 and "/hub/login" in anonymous.headers["Location"]
    no_token = requests.get(f"{report_hub.url}/hub/api/usage", timeout=30)
    assert no_token.status_code == 403
