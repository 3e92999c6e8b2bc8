"""Journey J1 on the embedded default: sign in, spawn, run code, stop, leave nothing behind."""

import json
import signal

import psutil
import pytest
import requests

from tests.conftest import SHARED_PASSWORD
from tests.support.user_session import UserSession

pytestmark = pytest.mark.integration


def test_sign_in_spawn_execute_and_stop_cleanly(running_hub):
    user = UserSession(running_hub.url, "ada")
    landing = user.login(SHARED_PASSWORD)
    assert landing.status_code == 200
    assert "ada" in user.http.get(f"{running_hub.url}/hub/home").text

    user.request_token()
    events = user.spawn()
    assert events[-1].get("ready"), events
    status = user.server("/api/status")
    assert status.status_code == 200
    assert "kernels" in status.json()

    reply = user.execute("1+1")
    assert reply["result"] == "2", reply
    assert reply["error"] is None

    running_hub.record_descendants()
    user.stop_server()
    assert running_hub.stop() == 0
    assert running_hub.leftover_processes() == []


def test_lab_is_the_landing_page_with_examples_and_data(running_hub, site_folder):
    user = UserSession(running_hub.url, "grace")
    user.login(SHARED_PASSWORD)
    user.request_token()
    user.spawn()

    lab = user.http.get(f"{running_hub.url}/user/grace/")
    assert lab.status_code == 200
    assert lab.url.endswith("/user/grace/lab"), lab.url

    listing = user.server("/api/contents/examples").json()
    assert "getting-started.ipynb" in [item["name"] for item in listing["content"]]
    reply = user.execute(
        "import os, pathlib\n"
        "print(sorted(os.listdir(os.environ['KIOSKHUB_DATA_DIR'])))\n"
        "print(pathlib.Path.cwd() == pathlib.Path.home())"
    )
    assert "beamline-sample.csv" in reply["stdout"], reply
    assert reply["stdout"].strip().endswith("True"), reply
    assert str(site_folder / "homes" / "grace") in user.execute("import os; os.getcwd()")["result"]


def test_examples_are_copied_once_and_never_overwritten(running_hub, site_folder):
    user = UserSession(running_hub.url, "hedy")
    user.login(SHARED_PASSWORD)
    user.request_token()
    user.spawn()
    notebook = site_folder / "homes" / "hedy" / "examples" / "getting-started.ipynb"
    notebook.write_text('{"changed": "by the user"}')
    user.stop_server()

    user.spawn()
    assert notebook.read_text() == '{"changed": "by the user"}'
    notebook.unlink()
    user.stop_server()
    user.spawn()
    assert not notebook.exists(), "a deleted example came back"


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("bad/name", "Invalid username"),
        ("-leading-dash", "Invalid username"),
        ("x" * 40, "Invalid username"),
    ],
)
def test_bad_usernames_get_a_clear_message(running_hub, username, message):
    reply = UserSession(running_hub.url, username).login(SHARED_PASSWORD)
    assert reply.status_code == 400
    assert message in reply.text
    assert "lowercase letters, digits" in reply.text


def test_wrong_password_is_refused(running_hub):
    reply = UserSession(running_hub.url, "ada").login("not-the-password")
    assert reply.status_code == 403
    assert "Invalid username or password" in reply.text


def test_usernames_are_normalised(running_hub):
    user = UserSession(running_hub.url, "  Ada  ")
    assert user.login(SHARED_PASSWORD).status_code == 200
    assert user.http.cookies.get("jupyterhub-session-id")
    user.username = "ada"
    token = user.request_token()
    assert (
        requests.get(
            f"{running_hub.url}/hub/api/user",
            headers={"Authorization": f"token {token}"},
            timeout=10,
        ).json()["name"]
        == "ada"
    )


def test_admin_signs_in_with_the_admin_password_only(running_hub, site_folder):
    secrets = (site_folder / "state" / "secrets.json").read_text()
    assert UserSession(running_hub.url, "admin").login(SHARED_PASSWORD).status_code == 403
    admin = UserSession(running_hub.url, "admin")
    assert admin.login(json.loads(secrets)["admin_password"]).status_code == 200
    admin.request_token()
    assert admin.api("/user").json()["admin"] is True


def test_sigterm_also_stops_every_server(running_hub):
    user = UserSession(running_hub.url, "ada")
    user.login(SHARED_PASSWORD)
    user.request_token()
    user.spawn()
    assert user.server("/api/kernels", "POST", json={"name": "python3"}).status_code == 201
    running_hub.record_descendants()
    assert any("ipykernel" in " ".join(p.cmdline()) for p in _processes(running_hub.seen_pids))
    running_hub.stop(signal.SIGTERM)
    assert running_hub.leftover_processes() == []


def _processes(pids):
    for pid in pids:
        try:
            yield psutil.Process(pid)
        except psutil.NoSuchProcess:
            pass
