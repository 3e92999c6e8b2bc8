"""The re-execution report on a real hub: the gallery starts the server of the reserved
user ``gallery-run`` with a version's pinned environment, runs the version's notebook there
from the top with its files, compares, stops the server and empties its home. A
deterministic notebook (reading one of its files) is "reproduced"; one printing the time
"differs"; a reader who is not the author may read the report but not ask for a run; no
one signs in as ``gallery-run``; the badge shows on the version page and in the list."""

from __future__ import annotations

import base64
import re
import time

import pytest
import requests

from tests.conftest import SHARED_PASSWORD
from tests.support.gallery_hub import gallery_hub
from tests.support.user_session import UserSession, signed_in

pytestmark = pytest.mark.integration

SERVICE = "/services/gallery"


def code(n: int, source: str, *outputs: dict) -> dict:
    return {"cell_type": "code", "id": f"c{n}", "source": source, "metadata": {},
            "execution_count": n + 1, "outputs": list(outputs)}  # fmt: skip


def stream(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def result(n: int, text: str) -> dict:
    return {"output_type": "execute_result", "execution_count": n + 1, "metadata": {},
            "data": {"text/plain": text}}  # fmt: skip


def notebook(*cells: dict) -> dict:
    kernel = {"name": "python3", "display_name": "Python 3"}
    return {"cells": list(cells), "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": kernel}}  # fmt: skip


DETERMINISTIC = notebook(
    code(0, "print(sum(range(10)))", stream("45\n")),
    code(1, "0.1 + 0.2", result(1, "0.30000000000000004")),
    code(2, "open('data/points.csv').read()", result(2, "'x,y\\n1,2\\n'")),
    # It runs as the reserved user's own account, with the data mount read-only.
    code(3, "import getpass, os\ngetpass.getuser(), os.access(os.environ['KIOSKHUB_DATA_DIR'],"
            " os.W_OK)", result(3, "('kh-gallery-run', False)")),
)
# A run that leaves a server config and a startup file in its home, and a later one that
# looks for them: the home is emptied between runs, so nothing of the first reaches it.
PLANT = notebook(
    code(0, "import os\nos.makedirs(os.path.expanduser('~/.jupyter'), exist_ok=True)\n"
            "open(os.path.expanduser('~/.jupyter/jupyter_server_config.py'), 'w')"
            ".write('raise SystemExit')\nopen(os.path.expanduser('~/planted'), 'w').close()"),
)
LOOK = notebook(
    code(0, "import os\nos.path.exists(os.path.expanduser('~/planted'))", result(0, "False")),
)
# A notebook that, while re-executed, tries the gallery with its server's token.
KNOCK = notebook(
    code(0, "import os, urllib.error, urllib.request\n"
            "url = os.environ['KIOSKHUB_GALLERY_URL'] + 'api/entries'\n"
            "token = {'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}\n"
            "try:\n    urllib.request.urlopen(urllib.request.Request(url, headers=token))\n"
            "    print('read the gallery')\n"
            "except urllib.error.HTTPError as error:\n    print(error.code)",
         stream("403\n")),
)
CLOCK = notebook(
    code(0, "import datetime\nprint(datetime.datetime.now())", stream("2020-01-01 00:00:00\n")),
)


@pytest.fixture(scope="module")
def site():
    with gallery_hub("gallery-reexec") as (hub, folder):
        ada = signed_in(hub.url, "ada", SHARED_PASSWORD)
        ada.request_token()
        bob = signed_in(hub.url, "bob", SHARED_PASSWORD)
        bob.request_token()
        assert ada.spawn()[-1].get("ready"), hub.log_text()[-3000:]  # publishing needs it
        yield {"hub": hub, "folder": folder, "ada": ada, "bob": bob}


def gallery(user: UserSession, path: str, method: str = "GET", **kwargs) -> requests.Response:
    return requests.request(
        method,
        f"{user.hub_url}{SERVICE}/api{path}",
        headers={"Authorization": f"token {user.token}"},
        timeout=60,
        **kwargs,
    )


def publish(user: UserSession, title: str, content: dict, **extra) -> int:
    reply = gallery(user, "/entries", "POST", json={
        "title": title, "notebook": content, "visibility": "site",
        "files": {"data/points.csv": base64.b64encode(b"x,y\n1,2\n").decode()},
    } | extra)  # fmt: skip
    assert reply.status_code in (200, 201), reply.text
    return reply.json()["id"]


def wait_done(user: UserSession, entry_id: int, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < deadline:
        report = gallery(user, f"/entries/{entry_id}/versions/1/reexecution").json()
        seen.add(report["state"])
        if report["state"] == "done":
            return report | {"seen": seen}
        time.sleep(2)
    raise AssertionError(f"entry {entry_id} was not re-executed in {timeout} s: {report}")


def test_a_deterministic_notebook_reproduces_and_one_printing_the_time_differs(site):
    hub, ada, bob = site["hub"], site["ada"], site["bob"]
    steady = publish(ada, "Sums", DETERMINISTIC)
    clock = publish(ada, "The time", CLOCK)

    refused = gallery(bob, f"/entries/{steady}/versions/1/reexecute", "POST", json={})
    assert refused.status_code == 403, refused.text
    assert refused.json()["message"] == "only the author of this entry or an admin may do this"
    bad = gallery(ada, f"/entries/{steady}/versions/1/reexecute", "POST",
                  json={"tolerance": {"relative": -1}})  # fmt: skip
    assert bad.status_code == 400
    assert bad.json()["message"] == (
        "'tolerance': 'relative' must be a number of 0 or more, not -1"
    )
    assert gallery(bob, f"/entries/{steady}/versions/1/reexecution").json()["state"] == "none"

    for entry_id in (steady, clock):
        queued = gallery(ada, f"/entries/{entry_id}/versions/1/reexecute", "POST", json={})
        assert queued.status_code == 202, queued.text
        assert queued.json()["state"] == "queued"
    again = gallery(ada, f"/entries/{clock}/versions/1/reexecute", "POST", json={})
    assert again.status_code == 409, again.text

    report = wait_done(bob, steady)
    assert report["badge"] == "reproduced", (report, hub.log_text()[-4000:])
    assert [(c["cell"], c["result"]) for c in report["cells"]] == [
        ("c0", "same"), ("c1", "same"), ("c2", "same"), ("c3", "same"),
    ]  # fmt: skip
    pinned = gallery(ada, f"/entries/{steady}/versions/1").json()["pinning"]["environment"]
    assert report["environment"] == {"name": pinned, "changed": {}}
    report = wait_done(bob, clock)
    assert report["badge"] == "differs (cell 1)", (report, hub.log_text()[-4000:])
    [cell] = report["cells"]
    assert cell["result"] == "differs" and cell["why"][0].startswith("output 1 text: number ")

    # The server is gone and so is its home; no one signs in as gallery-run.
    assert not (site["folder"] / "homes" / "gallery-run").exists()
    servers = ada.http.get(f"{hub.url}/hub/api/users/ada", timeout=30)
    assert servers.status_code == 200
    login = UserSession(hub.url, "gallery-run").login(SHARED_PASSWORD)
    assert "reserved" in login.text

    page = ada.http.get(f"{hub.url}{SERVICE}/entries/{clock}/v1", timeout=60)
    assert page.status_code == 200, page.text[-2000:]
    assert '<span class="tag" id="kh-gallery-badge">differs (cell 1)</span>' in page.text
    listed = ada.http.get(f"{hub.url}{SERVICE}/", timeout=60).text
    assert '<td class="kh-gallery-badge">reproduced</td>' in listed


def test_only_the_gallery_starts_the_re_execution_server(site):
    ada = site["ada"]
    for method in ("POST", "GET", "DELETE"):
        reply = ada.api("/gallery/reexecution-server", method, json={"environment": "default"})
        assert reply.status_code == 403, reply.text
        assert reply.json()["message"] == "only the gallery starts re-execution servers"


def test_nothing_a_run_leaves_in_its_home_reaches_the_next(site):
    ada = site["ada"]
    plant, look = publish(ada, "Plants", PLANT), publish(ada, "Looks", LOOK)
    for entry_id in (plant, look):
        queued = gallery(ada, f"/entries/{entry_id}/versions/1/reexecute", "POST", json={})
        assert queued.status_code == 202, queued.text
    assert wait_done(ada, plant)["badge"] == "reproduced"
    report = wait_done(ada, look)
    assert report["badge"] == "reproduced", (report, site["hub"].log_text()[-4000:])


def test_the_server_stops_a_notebook_at_its_time_limit(site):
    ada = site["ada"]
    sleepy = notebook(code(0, "x = 1"), code(1, "import time\ntime.sleep(60)"))
    started = time.monotonic()
    reply = ada.server("/kioskhub/gallery/reexecute", "POST",
                       json={"notebook": sleepy, "files": {}, "time_limit_s": 3})  # fmt: skip
    assert reply.status_code == 200, reply.text
    assert time.monotonic() - started < 40
    answer = reply.json()
    assert answer["stopped"] == {"index": 1, "why": "the time limit of 3 s was reached"}
    assert answer["notebook"]["cells"][0]["execution_count"] == 1
    escape = ada.server("/kioskhub/gallery/reexecute", "POST",
                        json={"notebook": sleepy, "files": {"../out.txt": ""}})  # fmt: skip
    assert escape.status_code == 400
    assert escape.json()["message"] == "the file name '../out.txt' is not a plain relative path"


def test_the_tolerance_of_the_publish_request_is_used(site):
    ada = site["ada"]
    close = notebook(code(0, "0.1 + 0.2", result(0, "0.3000001")))
    loose = publish(ada, "Close enough", close, tolerance={"relative": 1e-6})
    strict = publish(ada, "Not close enough", close)
    for entry_id in (loose, strict):
        queued = gallery(ada, f"/entries/{entry_id}/versions/1/reexecute", "POST", json={})
        assert queued.status_code == 202, queued.text
    assert wait_done(ada, loose)["badge"] == "reproduced"
    report = wait_done(ada, strict)
    assert report["badge"] == "differs (cell 1)"
    assert report["cells"][0]["why"] == [
        "output 1 text/plain: number 0.3000001 → 0.30000000000000004"
    ]


def test_the_author_re_executes_from_the_version_page(site):
    hub, ada, bob = site["hub"], site["ada"], site["bob"]
    entry_id = publish(ada, "From the page", DETERMINISTIC)
    page = ada.http.get(f"{hub.url}{SERVICE}/entries/{entry_id}/v1", timeout=60)
    assert "This version has not been re-executed." in page.text
    form = page.text.split('id="kh-gallery-reexecute"')[1].split("</form>")[0]
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', form).group(1)
    reader = bob.http.get(f"{hub.url}{SERVICE}/entries/{entry_id}/v1", timeout=60)
    assert reader.status_code == 200 and "kh-gallery-reexecute" not in reader.text

    forged = ada.http.post(f"{hub.url}{SERVICE}/api/entries/{entry_id}/versions/1/reexecute",
                           data={}, allow_redirects=False, timeout=60)  # fmt: skip
    assert forged.status_code == 403, forged.text
    sent = ada.http.post(f"{hub.url}{SERVICE}/api/entries/{entry_id}/versions/1/reexecute",
                         data={"_xsrf": xsrf}, allow_redirects=False, timeout=60)  # fmt: skip
    assert sent.status_code == 303, sent.text
    assert sent.headers["Location"] == f"{SERVICE}/entries/{entry_id}/v1"
    under_way = ada.http.get(f"{hub.url}{SERVICE}/entries/{entry_id}/v1", timeout=60).text
    assert re.search(r'data-state="(queued|running)"', under_way), under_way[-3000:]
    assert '<meta http-equiv="refresh" content="10">' in under_way
    assert wait_done(ada, entry_id)["badge"] == "reproduced"


def test_a_notebook_being_re_executed_cannot_use_the_gallery(site):
    ada = site["ada"]
    entry_id = publish(ada, "Knocks", KNOCK)
    queued = gallery(ada, f"/entries/{entry_id}/versions/1/reexecute", "POST", json={})
    assert queued.status_code == 202, queued.text
    report = wait_done(ada, entry_id)
    assert report["badge"] == "reproduced", report
