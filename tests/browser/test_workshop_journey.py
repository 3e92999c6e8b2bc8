"""Journey J3 in two real browsers: a teacher runs a class, a participant joins it.

The teacher creates an event on the Workshops page and reads its join link; the
participant opens the link in a second browser, picks a display name and lands in
JupyterLab with the materials pulled, and runs the materials notebook, which saves an
answer; the teacher sees them running, broadcasts a message that the participant's
JupyterLab shows, and collects work whose archive holds the participant's answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kioskhub.hub.sample_data import write_sample_data
from tests.browser.test_lab_in_browser import kernel_is_ready, sign_in
from tests.conftest import SHARED_PASSWORD, open_folder
from tests.support.browser import Browser
from tests.support.hub_process import free_port, start_hub, write_site_config

pytestmark = pytest.mark.browser

ANSWER = "the answer is 42"
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "metadata": {},
            "source": f"open('answer.txt', 'w').write({ANSWER!r})\nprint('answer saved')",
            "outputs": [],
            "execution_count": None,
        }
    ],
    "metadata": {
        "kernelspec": {
            "name": "python3",
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
        }
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def served_materials(folder: Path) -> Path:
    """``served/course.git``: a bare repository with ``exercise.ipynb`` on ``main``."""
    work = folder / "work"
    work.mkdir()
    (work / "exercise.ipynb").write_text(json.dumps(NOTEBOOK))
    git("init", "-q", "-b", "main", cwd=work)
    git("add", ".", cwd=work)
    git("-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-qm", "m", cwd=work)
    served = folder / "served"
    served.mkdir()
    git("clone", "-q", "--bare", str(work), str(served / "course.git"), cwd=folder)
    return served


@pytest.fixture
def school():
    if shutil.which("git") is None or not Path("/usr/lib/git-core/git-daemon").exists():
        pytest.fail("git and git-daemon (Debian package git) are needed to serve the materials")
    folder = open_folder("workshop-journey")
    write_sample_data(folder / "data")
    served = served_materials(folder)
    port = free_port()
    daemon = subprocess.Popen(
        [
            "git", "daemon", "--export-all", "--reuseaddr", "--listen=127.0.0.1",
            f"--port={port}", f"--base-path={served}", str(served),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    config = write_site_config(
        folder,
        workshops={"enabled": True, "teacher_groups": ["teachers"], "prewarm_seats": 0},
        groups={"teachers": ["tess"]},
        builder={"allowed_hosts": ["localhost"]},
    )
    hub = start_hub(config, folder / "hub.log")
    browsers: list[Browser] = []
    yield {
        "hub": hub,
        "folder": folder,
        "repo": f"git://localhost:{port}/course.git",
        "browsers": browsers,
    }
    for browser in browsers:
        browser.quit()
    hub.stop()
    daemon.terminate()
    daemon.wait(10)
    shutil.rmtree(folder, ignore_errors=True)


def local_minute(moment: float) -> str:
    """A datetime-local field's value (the form reads it as UTC)."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M")


def fill(browser: Browser, selector: str, value: str) -> None:
    field = browser.wait_for(selector)
    browser.driver.execute_script("arguments[0].value = arguments[1];", field, value)


def create_event(teacher: Browser, hub_url: str, repo: str) -> str:
    """The teacher fills the Workshops form; returns the event page's join link."""
    teacher.get(f"{hub_url}/hub/workshops")
    teacher.wait_for("#kh-workshop-create")
    fill(teacher, "#kh-workshop-title", "Python for <b>physicists</b>")
    fill(teacher, "#kh-workshop-repo", repo)
    fill(teacher, "#kh-workshop-ref", "main")
    fill(teacher, "#kh-workshop-seats", "5")
    fill(teacher, "#kh-workshop-start", local_minute(time.time() - 120))
    fill(teacher, "#kh-workshop-end", local_minute(time.time() + 3 * 3600))
    teacher.wait_for("#kh-workshop-create button[type=submit]").click()
    title = teacher.wait_for("#kh-workshop-title", 60)
    assert title.text == "Python for <b>physicists</b>"
    return teacher.wait_for("#kh-workshop-join-url", 30).text.strip()


def join_and_run(participant: Browser, join_url: str, hub_url: str) -> str:
    """The participant joins as "Ada", reaches the materials and runs the exercise;
    returns their hub username."""
    participant.get(join_url)
    fill(participant, "#kh-display-name", "Ada <i>Lovelace</i>")
    participant.wait_for("#kh-join-form [type=submit]").click()
    participant.wait_for_url(
        lambda url: "/lab/tree/materials" in url or "/lab" in url, 180, "JupyterLab"
    )
    username = participant.url.split("/user/", 1)[1].split("/", 1)[0]
    assert username.startswith("ws-")
    participant.get(f"{hub_url}/user/{username}/lab/tree/materials/exercise.ipynb")
    participant.wait_until(lambda _: kernel_is_ready(participant), 120, "no idle kernel")
    participant.click_text(".lm-MenuBar-itemLabel", "Run", 30)
    participant.click_text(".lm-Menu-itemLabel", "Run All Cells", 30)
    participant.wait_for_text(".jp-OutputArea-output", "answer saved", 120)
    return username


def test_a_teacher_runs_a_class_that_a_participant_joins(school):
    hub_url = school["hub"].url
    teacher, participant = Browser(), Browser()
    school["browsers"].extend([teacher, participant])
    sign_in(teacher, hub_url, "tess", SHARED_PASSWORD)
    teacher.wait_until(lambda d: "/hub/login" not in d.current_url, 60, "tess signed in")

    join_url = create_event(teacher, hub_url, school["repo"])
    event_url = teacher.url
    event_id = event_url.rstrip("/").rsplit("/", 1)[1]
    username = join_and_run(participant, join_url, hub_url)

    # The teacher sees the participant running, under their display name (as text).
    def running(_driver) -> bool:
        teacher.get(event_url)
        rows = teacher.css(f'.kh-workshop-participant[data-username="{username}"]')
        return bool(rows) and rows[0].get_attribute("data-server") == "running"

    teacher.wait_until(running, 60, "the class view never showed the participant running")
    row = teacher.css(f'.kh-workshop-participant[data-username="{username}"]')[0]
    assert "Ada <i>Lovelace</i>" in row.text

    # A broadcast appears inside the participant's JupyterLab.
    fill(teacher, "#kh-workshop-message", "Break until 11:00 <b>please</b>")
    teacher.wait_for("#kh-workshop-broadcast").click()
    teacher.wait_for_text("#kh-workshop-done", "Your message was sent", 30)
    toast = participant.wait_for_text(".Toastify__toast", "Break until 11:00", 90)
    assert "<b>please</b>" in toast.text

    # Collecting work: the archive holds the answer the notebook saved.
    teacher.wait_for("#kh-workshop-collect").click()
    teacher.wait_for_text("#kh-workshop-done", "The work was collected", 120)
    folder = school["folder"] / "state" / "workshops" / event_id
    (archive_path,) = sorted(folder.glob("collected-*.tar.gz"))
    with tarfile.open(archive_path) as archive:
        answers = [m for m in archive if m.name.endswith("materials/answer.txt")]
        assert len(answers) == 1, archive.getnames()
        assert archive.extractfile(answers[0]).read().decode() == ANSWER
    assert teacher.css("#kh-workshop-collections a")
