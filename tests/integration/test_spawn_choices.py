"""Choosing at spawn time: the form, launch links, progress, failures, GPUs, restarts."""

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.hub_process import remove_test_site, start_hub, write_site_config
from tests.support.user_session import UserSession, servers_once_checked
from tests.support.user_session import signed_in as sign_in

pytestmark = pytest.mark.integration

RECORDED = Path(__file__).resolve().parents[1] / "unit" / "recorded"


def fake_environment(folder: Path, name: str, server_script: str) -> Path:
    """A venv-shaped folder whose jupyterhub-singleuser is ``server_script``."""
    prefix = folder / name
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    server = prefix / "bin" / "jupyterhub-singleuser"
    server.write_text("#!/bin/sh\n" + server_script)
    server.chmod(0o755)
    return prefix


def fake_nvidia_smi(folder: Path) -> Path:
    """A bin folder whose nvidia-smi prints recorded output of a machine with 4 A100s."""
    bin_dir = folder / "fake-bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    gpus = (RECORDED / "nvidia-smi-4xA100.csv").read_text()
    apps = (RECORDED / "nvidia-smi-4xA100-compute-apps.csv").read_text()
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in --query-compute-apps*) cat <<"EOF"\n'
        f'{apps}EOF\n;; *) cat <<"EOF"\n{gpus}EOF\n;; esac\n'
    )
    script.chmod(0o755)
    return bin_dir


@pytest.fixture(scope="module")
def site():
    folder = open_folder("choices")
    write_sample_data(folder / "data")
    config = write_site_config(
        folder,
        spawner={"start_timeout": 15},
        environments=[
            {"name": "default", "display_name": "Python 3", "default": True},
            {"name": "gone", "display_name": "Gone", "path": str(folder / "no-such-venv")},
            {
                "name": "crashing",
                "path": str(
                    fake_environment(
                        folder, "crashing", "echo 'ModuleNotFoundError: jupyterlab' >&2\nexit 3\n"
                    )
                ),
            },
            {"name": "hanging", "path": str(fake_environment(folder, "hanging", "sleep 600\n"))},
            {"name": "teaching", "groups": ["teachers"]},
        ],
        profiles=[
            {"name": "small", "display_name": "Small", "cpu": 1, "memory": "1Gi", "default": True},
            {
                "name": "a100",
                "display_name": "One A100",
                "memory": "1Gi",
                "gpu": {"count": 1, "type": "A100"},
            },
        ],
    )
    os.environ["KIOSKHUB_TEST_EXTRA_PATH"] = str(fake_nvidia_smi(folder))
    hub = start_hub(config, folder / "hub.log")
    os.environ.pop("KIOSKHUB_TEST_EXTRA_PATH")
    yield {"hub": hub, "folder": folder}
    if hub.process.poll() is None:
        hub.stop()
    shutil.rmtree(folder, ignore_errors=True)


def signed_in(hub, name: str) -> UserSession:
    return sign_in(hub.url, name, SHARED_PASSWORD)


def test_spawn_form_offers_what_the_user_may_choose(site):
    user = signed_in(site["hub"], "eve")
    form = user.http.get(f"{site['hub'].url}/hub/spawn").content.decode()
    assert 'name="environment" value="default" checked' in form
    assert 'value="crashing"' in form
    assert 'value="teaching"' not in form, "a group-only environment was offered to all"
    assert "1 × A100 GPU" in form and '<span class="kh-badge">GPU</span>' in form
    assert "1 CPU · 1 GiB memory" in form


def test_form_post_starts_the_chosen_server_with_progress(site):
    user = signed_in(site["hub"], "fay")
    reply = user.http.post(
        f"{site['hub'].url}/hub/spawn",
        data={"environment": "default", "profile": "small", "_xsrf": user.http.cookies["_xsrf"]},
    )
    assert reply.status_code == 200
    events = user.wait_ready()
    messages = [e.get("message", "") for e in events]
    assert "Environment default, profile small" in messages
    assert "Waiting for the server to answer" in messages
    assert events[-1]["ready"]
    assert user.api("/users/fay").json()["servers"][""]["user_options"] == {
        "environment": "default",
        "profile": "small",
    }


def test_launch_link_preselects_and_starts(site):
    user = signed_in(site["hub"], "gus")
    reply = user.http.get(
        f"{site['hub'].url}/hub/spawn?environment=default&profile=a100", allow_redirects=True
    )
    assert reply.status_code == 200
    assert user.wait_ready()[-1]["ready"]
    options = user.api("/users/gus").json()["servers"][""]["user_options"]
    assert options == {"environment": "default", "profile": "a100"}
    reply = user.execute("import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")
    recorded = (RECORDED / "nvidia-smi-4xA100.csv").read_text().splitlines()
    assert reply["stdout"].strip() in [line.split(", ")[1] for line in recorded]


def test_a_second_gpu_server_gets_a_different_gpu(site):
    first = signed_in(site["hub"], "hal")
    second = signed_in(site["hub"], "ivy")
    first.spawn({"profile": "a100"})
    second.spawn({"profile": "a100"})
    seen = {
        user.execute("import os; print(os.environ['CUDA_VISIBLE_DEVICES'])")["stdout"].strip()
        for user in (first, second)
    }
    assert len(seen) == 2
    first.stop_server()
    second.stop_server()


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("gone", "The environment 'gone' is missing"),
        ("crashing", "Your server exited during start (exit status 3)"),
        ("crashing", "ModuleNotFoundError: jupyterlab"),
        ("hanging", "Your server did not start within 15 seconds"),
    ],
)
def test_failures_say_what_went_wrong(site, environment, expected):
    user = signed_in(site["hub"], f"fail-{environment}")
    reply = user.api(f"/users/{user.username}/server", "POST", json={"environment": environment})
    if reply.status_code >= 400:
        message = reply.json()["message"]
    else:
        events = user.wait_ready(timeout=60)
        assert events[-1].get("failed"), events
        message = events[-1]["message"]
        pending = user.http.get(f"{site['hub'].url}/hub/spawn-pending/{user.username}")
        assert expected in pending.content.decode() or "failed" in pending.text
    assert expected in message, message


def test_restarted_hub_keeps_running_servers_and_forgets_dead_ones():
    folder = open_folder("restart")
    write_sample_data(folder / "data")
    config = write_site_config(folder, hub={"cleanup_servers": False})
    hub = start_hub(config, folder / "hub.log")
    try:
        kept, lost = signed_in(hub, "kim"), signed_in(hub, "lou")
        kept.spawn()
        lost.spawn()
        lost_pid = _server_pid(folder, "lou")
        assert hub.stop() == 0
        psutil.Process(lost_pid).kill()
        with pytest.raises(requests.ConnectionError):
            kept.server("/api/status")

        hub = start_hub(config, folder / "hub.log")
        assert kept.server("/api/status").status_code == 200
        assert kept.execute("1+1")["result"] == "2"
        assert servers_once_checked(lost, "lou") == {}
        assert lost.spawn()[-1]["ready"]
    finally:
        remove_test_site(hub, folder)


def _server_pid(folder: Path, name: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for proc in psutil.process_iter(["cmdline", "environ"]):
            try:
                env = proc.info["environ"] or {}
                if env.get("JUPYTERHUB_USER") == name and env.get("HOME", "").startswith(
                    str(folder)
                ):
                    return proc.pid
            except psutil.Error:
                continue
        time.sleep(0.5)
    raise AssertionError(f"no server process for {name}")


def test_shared_account_mode_warns_on_the_home_page():
    folder = open_folder("shared")
    write_sample_data(folder / "data")
    hub = start_hub(
        write_site_config(folder, spawner={"isolation": "shared-account"}), folder / "hub.log"
    )
    try:
        user = signed_in(hub, "max")
        page = requests.get(f"{hub.url}/hub/home", cookies=user.http.cookies, timeout=10)
        assert "users are not isolated" in page.content.decode()
    finally:
        hub.stop(signal.SIGINT)
        shutil.rmtree(folder, ignore_errors=True)
