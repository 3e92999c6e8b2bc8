"""The spawn backend contract (spawner/base.py), driven through tiny failure-injecting backends.

Each backend below is a real ``SpawnBackend`` on JupyterHub's ``Spawner``: its server is a real
HTTP server on loopback, and each subclass breaks one step, named after what it does. The
real backends' state of their previous version is loaded as a restarted hub would load it.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import psutil
import pytest
from jupyterhub.spawner import Spawner
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import Site
from kioskhub.spawner import usage_store
from kioskhub.spawner.base import SpawnBackend
from kioskhub.spawner.identity_record import read_record
from kioskhub.spawner.lab_identity import LabIdentity
from kioskhub.spawner.local_process import KioskSpawner
from kioskhub.spawner.podman import PodmanSpawner
from kioskhub.spawner.readiness import answers_http
from tests.support.kube_cluster import Group, HubUser

XSS = "<img src=x onerror=alert(1)>"


class Answer(RequestHandler):
    def get(self, *args):
        self.write("{}")


class LoopbackBackend(SpawnBackend, Spawner):
    """A backend whose 'server' is an HTTP server in this process; it records every step."""

    runnable_kinds = frozenset({"own"})
    backend_name = "loopback"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.steps: list[str] = []
        self.http: HTTPServer | None = None
        self.exit_status: int | None = None
        self.held = False

    async def prepare(self, spec, gpu_devices):
        self.steps.append(f"prepare {spec.environment.name} {spec.profile}")

    async def launch(self, spec):
        self.held = True  # say, a cgroup on the hub's machine
        yield {"first": 1}
        self.steps.append("launch")
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.http = HTTPServer(Application([(r"/(.*)", Answer)]))
        self.http.add_sockets(sockets)
        yield {"port": self.port}

    def server_address(self):
        return "127.0.0.1", self.port

    async def answering(self):
        return await answers_http(f"http://127.0.0.1:{self.port}/api")

    async def log_tail(self, lines=20):
        return "the last words of the server"

    async def poll_server(self):
        if self.http is None:
            return self.exit_status if self.launch_state else 0
        return None

    async def stop_server(self, now):
        self.steps.append("stop")
        if self.http is not None:
            self.http.stop()
            self.http, self.exit_status = None, 0

    async def tear_down(self):
        self.steps.append(f"tear down {sorted(self.launch_state)}")
        await self.stop_server(True)

    async def release(self):
        if self.held:
            self.steps.append("release")
            self.held = False


class FailsAfterSecondCheckpoint(LoopbackBackend):
    async def launch(self, spec):
        async for checkpoint in super().launch(spec):
            yield checkpoint
        raise RuntimeError("the cloud ran out of quota")


class ExitsDuringStart(LoopbackBackend):
    async def launch(self, spec):
        self.held = True
        yield {"process": 1}
        self.exit_status = 3


class NeverAnswers(LoopbackBackend):
    async def launch(self, spec):
        self.held = True
        yield {"process": 1}
        self.port = 9  # discard: nothing answers there

    async def poll_server(self):
        return None


class SlowLaunch(LoopbackBackend):
    """Waits in launch until the test lets it go."""

    async def launch(self, spec):
        self.launching.set()
        await self.go_on.wait()
        async for checkpoint in super().launch(spec):
            yield checkpoint


def site_for(tmp_path: Path, **sections) -> Site:
    return Site.model_validate(
        {
            "hub": {"state_dir": str(tmp_path / "state")},
            "home": {"root": str(tmp_path / "homes")},
            "environments": [
                {"name": "default", "display_name": "Python 3", "default": True},
                {"name": "rstudio", "kind": "image", "image": "rocker/r-ver:4.4"},
            ],
            "profiles": [{"name": "small", "display_name": "Small", "cpu": 1, "memory": "1Gi"}],
            **sections,
        }
    )


def backend(cls, tmp_path, options=None, **traits):
    traits.setdefault("start_timeout", 5)
    spawner = cls(user=HubUser("ada", [Group("physics")]), site=site_for(tmp_path), **traits)
    spawner.user_options = dict(options or {})
    return spawner


async def spawn(spawner):
    """What JupyterHub's User.spawn does: apply_user_options, then start."""
    await spawner._run_apply_user_options(spawner.user_options)
    return await spawner.start()


def test_a_start_runs_the_steps_once_and_stop_cleans_up(tmp_path):
    reads = []

    async def environments(site, username, groups):
        reads.append((username, groups))
        return site.environments

    async def scenario():
        spawner = backend(LoopbackBackend, tmp_path, environments_for_user=environments)
        before = await spawner.poll()
        address = await spawn(spawner)
        running = await spawner.poll()
        state = spawner.get_state()
        await spawner.stop()
        return spawner, before, address, running, state, await spawner.poll()

    spawner, before, address, running, state, after = asyncio.run(scenario())

    assert reads == [("ada", ("physics",))], "the choice was checked more than once"
    assert (before, running, after) == (0, None, 0)
    assert address == ("127.0.0.1", state["kioskhub"]["launch"]["port"])
    assert state["kioskhub"] == {
        "version": 1,
        "launch": {"first": 1, "port": address[1]},
        "gpus": "",
        "summary": "Python 3 · Small",
        "usage": state["kioskhub"]["usage"],
    }
    assert spawner.choice_summary == "Python 3 · Small"
    assert spawner.steps == ["prepare default small", "launch", "stop", "release"]
    (record,) = usage_store.records(tmp_path / "state" / "usage.sqlite")
    assert (record.record_id, record.username, record.groups) == (
        state["kioskhub"]["usage"], "ada", "physics"
    )
    assert (record.profile, record.environment, record.cpu_cores) == ("small", "default", 1)
    assert record.end is not None and record.end >= record.start, "the record was not closed"


def test_a_backend_that_fails_after_its_second_checkpoint_is_torn_down_completely(tmp_path):
    async def scenario():
        spawner = backend(FailsAfterSecondCheckpoint, tmp_path)
        with pytest.raises(RuntimeError, match="out of quota"):
            await spawn(spawner)
        return spawner, await spawner.poll()

    spawner, after = asyncio.run(scenario())

    assert spawner.steps == [
        "prepare default small", "launch", "tear down ['first', 'port']", "stop", "release"
    ]
    assert spawner.http is None, "the half-started server was left running"
    assert after == 0


def test_a_server_that_exits_during_start_is_explained_with_its_log(tmp_path):
    async def scenario():
        spawner = backend(ExitsDuringStart, tmp_path)
        with pytest.raises(web.HTTPError) as failed:
            await spawn(spawner)
        return spawner, failed.value

    spawner, error = asyncio.run(scenario())

    message = error.log_message % error.args
    assert message == (
        "Your server exited during start (exit status 3). "
        "Its last log lines:\nthe last words of the server"
    )
    assert spawner.steps[-3:] == ["tear down ['process']", "stop", "release"]


def test_a_server_that_never_answers_times_out_and_is_torn_down(tmp_path):
    async def scenario():
        spawner = backend(NeverAnswers, tmp_path, start_timeout=3)
        with pytest.raises(web.HTTPError) as failed:
            await spawn(spawner)
        return spawner, failed.value

    spawner, error = asyncio.run(scenario())

    assert (error.log_message % error.args).startswith(
        "Your server did not start within 3 seconds. Its last log lines:"
    )
    assert spawner.steps[-3:] == ["tear down ['process']", "stop", "release"]


class PollsSparingly(LoopbackBackend):
    """Its poll costs a process (as podman's does), so it asks to be polled every 0.5 s; its
    server answers from the tenth probe on."""

    start_poll_interval = 0.5

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.polls = self.probes = 0

    async def poll_server(self):
        self.polls += 1
        return await super().poll_server()

    async def answering(self):
        self.probes += 1
        return self.probes >= 10 and await super().answering()


class ExitsDuringSparseStart(ExitsDuringStart):
    start_poll_interval = 0.5


def test_a_backend_with_a_costly_poll_is_polled_at_its_interval_while_its_server_starts(
    tmp_path,
):
    async def scenario():
        spawner = backend(PollsSparingly, tmp_path)
        began = time.monotonic()
        await spawn(spawner)
        return spawner, time.monotonic() - began

    spawner, seconds = asyncio.run(scenario())

    assert spawner.probes == 10
    assert 1 <= spawner.polls <= seconds / 0.5 + 1
    assert spawner.polls < spawner.probes


def test_a_server_that_exits_during_a_sparsely_polled_start_is_still_explained(tmp_path):
    async def scenario():
        spawner = backend(ExitsDuringSparseStart, tmp_path)
        with pytest.raises(web.HTTPError) as failed:
            await spawn(spawner)
        return failed.value

    error = asyncio.run(scenario())

    assert (error.log_message % error.args).startswith(
        "Your server exited during start (exit status 3)."
    )


def test_poll_says_running_while_a_start_is_in_progress(tmp_path):
    async def scenario():
        spawner = backend(SlowLaunch, tmp_path)
        spawner.launching, spawner.go_on = asyncio.Event(), asyncio.Event()
        never_started = await spawner.poll()
        start = asyncio.ensure_future(spawn(spawner))
        await spawner.launching.wait()
        while_starting = await spawner.poll()
        spawner.go_on.set()
        await start
        running = await spawner.poll()
        await spawner.stop(now=True)
        return never_started, while_starting, running, await spawner.poll()

    assert asyncio.run(scenario()) == (0, None, None, 0)


def test_a_choice_the_backend_cannot_run_is_refused_with_the_reason(tmp_path):
    async def scenario():
        spawner = backend(LoopbackBackend, tmp_path, options={"environment": "rstudio"})
        with pytest.raises(web.HTTPError) as refused:
            await spawn(spawner)
        return spawner, refused.value, await spawner.get_options_form()

    spawner, refused, form = asyncio.run(scenario())

    assert refused.status_code == 400
    assert (refused.log_message % refused.args) == (
        "The environment 'rstudio' is a container image, which the loopback backend cannot "
        "run; it runs on sites whose spawner.backend is podman, kubernetes or "
        "openstack. Choose another environment."
    )
    assert spawner.steps == []
    assert 'value="default" checked>' in form
    assert 'value="rstudio" disabled>' in form
    assert (
        '<div class="kh-why">The environment &#x27;rstudio&#x27; is a container image, which '
        "the loopback backend cannot run; it runs on sites whose spawner.backend is podman, "
        "kubernetes or openstack. Choose another environment.</div>"
    ) in form


def test_display_names_are_escaped_in_the_local_spawn_form(tmp_path):
    async def environments(site, username, groups):
        return (Environment(name="mine", display_name=XSS, description=XSS),)

    spawner = backend(KioskSpawner, tmp_path, environments_for_user=environments)
    form = asyncio.run(spawner.get_options_form())

    assert "&lt;img src=x onerror=alert(1)&gt;" in form
    assert "<img" not in form


def test_state_of_the_previous_local_version_still_loads(tmp_path):
    me = psutil.Process()
    previous = {
        "pid": me.pid,
        "version": 1,
        "pid_started": me.create_time(),
        "log_path": str(tmp_path / "ada.log"),
        "limits": None,
        "gpus": "GPU-1",
    }
    spawner = backend(KioskSpawner, tmp_path)
    spawner.load_state(previous)

    assert asyncio.run(spawner.poll_server()) is None  # this very process: still running
    assert spawner.get_state() == {
        "pid": os.getpid(),
        "kioskhub": {
            "version": 2,
            "launch": {"pid_started": me.create_time(), "log_path": str(tmp_path / "ada.log"),
                       "limits": None},
            "gpus": "GPU-1",
            "summary": "Python 3 · Small",
        },
    }
    assert spawner.choice_summary == "Python 3 · Small"  # as the previous version's home page


def test_state_of_the_previous_podman_version_still_loads(tmp_path):
    previous = {
        "podman": {"version": 1, "pod": "kh-1234abcd-ada", "home_claim": "kh-1234abcd-home-ada",
                   "hub": "1234abcd", "host_port": 40123, "image": "localhost/kioskhub-base:1"}
    }
    spawner = backend(PodmanSpawner, tmp_path)
    spawner.load_state(previous)
    again = backend(PodmanSpawner, tmp_path)
    again.load_state(spawner.get_state())

    assert spawner.server_address() == ("127.0.0.1", 40123)
    assert spawner.names.container == "kh-1234abcd-ada-notebook"
    assert spawner.get_state() == {
        "kioskhub": {
            "version": 2, "launch": previous["podman"], "gpus": "", "summary": "Python 3 · Small"
        }
    }
    assert (again.names, again.host_port, again.image) == (
        spawner.names, 40123, "localhost/kioskhub-base:1"
    )


def test_state_of_an_unknown_version_is_not_adopted(tmp_path):
    spawner = backend(PodmanSpawner, tmp_path)
    spawner.load_state({"kioskhub": {"version": 99, "launch": {"pod": "x"}}})

    assert spawner.names is None and spawner.launch_state == {}



def test_a_start_with_a_lab_identity_records_it_and_a_refusal_removes_it(tmp_path):
    """The Dask Gateway runs the user's clusters as what the spawner recorded at start;
    once the identity is refused, the old one is gone with it."""
    identity = {"source": "claims", "trust_shared_password": True, "gids_claim": "gidNumbers"}
    site = site_for(tmp_path, auth={"identity": identity})
    claims = {"oauth_user": {"uidNumber": 20001, "gidNumber": 20000, "gidNumbers": [20100]}}
    user = HubUser("ada", [Group("physics")], auth_state=claims)

    async def scenario():
        spawner = LoopbackBackend(user=user, site=site, start_timeout=5)
        await spawn(spawner)
        recorded = read_record(site.hub.state_dir, "ada")
        await spawner.stop()
        user.auth_state = {"oauth_user": {"uidNumber": 20001}}
        with pytest.raises(web.HTTPError, match="no 'gidNumber' claim"):
            await spawn(spawner)
        return recorded

    assert asyncio.run(scenario()) == LabIdentity(20001, 20000, (20100,), "ada")
    assert read_record(site.hub.state_dir, "ada") is None


def test_a_start_with_a_kh_account_records_no_identity(tmp_path):
    async def scenario():
        spawner = backend(LoopbackBackend, tmp_path)
        await spawn(spawner)
        await spawner.stop()

    asyncio.run(scenario())
    assert not (tmp_path / "state" / "identities").exists()
