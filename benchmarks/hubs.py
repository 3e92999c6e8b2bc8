"""The hubs that the benchmarks compare, started on free ports in folders of their own.

- KioskHub exactly as ``make up`` runs it: ``kioskhub up`` on a generated ``kioskhub.yaml``
  (through ``tests/support/hub_process``, the same start that the integration tests use);
- plain JupyterHub: ``python -m jupyterhub`` with a minimal generated ``jupyterhub_config.py``:
  ``SimpleLocalProcessSpawner`` (``--allow-root``, the hub is root), JupyterHub's own
  ``SharedPasswordAuthenticator`` (the same sign-in KioskHub builds on), the same
  configurable-http-proxy and the same venv, so the same jupyter-server versions.

Both hubs get an ``admin`` account with a password; the benchmarks sign in as admin and
drive the REST API with that token.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import requests

from kioskhub.hub.sample_data import write_sample_data
from tests.support.hub_process import (
    HubProcess,
    free_port,
    kioskhub_env,
    start_hub,
    write_site_config,
)

from . import report

USER_PASSWORD = "bench-shared-password"
ADMIN_PASSWORD = "bench-admin-password-of-32-characters"
ADMIN = "admin"
DEFAULT_CONCURRENT_SPAWN_LIMIT = 100
"""JupyterHub's default ``concurrent_spawn_limit``, which KioskHub keeps (the site config has
no key for it); ``active_server_limit`` stays 0 (no limit) on both hubs."""

PLAIN_CONFIG = """\
# Plain JupyterHub for the benchmarks: generated, minimal.
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = {bind_url!r}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = {proxy_api!r}
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.pid_file = {proxy_pid!r}
c.JupyterHub.db_url = {db_url!r}
c.JupyterHub.cookie_secret_file = {cookie_secret!r}
c.JupyterHub.pid_file = {pid_file!r}
c.JupyterHub.cleanup_servers = {cleanup_servers!r}
c.JupyterHub.concurrent_spawn_limit = {concurrent_spawn_limit}
c.JupyterHub.active_server_limit = 0
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = {user_password!r}
c.SharedPasswordAuthenticator.admin_password = {admin_password!r}
c.Authenticator.admin_users = {{{admin!r}}}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = {start_timeout}
c.Spawner.http_timeout = {http_timeout}
"""


@dataclass
class BenchHub:
    """A running hub under benchmark: its kind, URL, process and the limits it runs with."""

    kind: str
    handle: HubProcess
    folder: Path
    limits: dict[str, Any] = field(default_factory=dict)
    restart: Any = None
    seen_pids: set[int] = field(default_factory=set)
    """Every process seen below this hub, across restarts."""
    started_at: float = field(default_factory=time.time)

    def record(self) -> None:
        self.seen_pids |= self.handle.record_descendants()

    @property
    def url(self) -> str:
        return self.handle.url

    @property
    def pid(self) -> int:
        return self.handle.process.pid

    def stop(self, timeout: float = 120, keep_servers: bool = False) -> float:
        """Stop the hub as Ctrl-C does and return the seconds it took. Unless
        ``keep_servers``, then end every process it started that is still there."""
        started = time.perf_counter()
        if self.handle.process.poll() is None:
            self.handle.stop(timeout=timeout)
        seconds = time.perf_counter() - started
        self.seen_pids |= self.handle.seen_pids
        if not keep_servers:
            end_leftovers(self.seen_pids, self.started_at)
        return seconds

    def remove(self) -> None:
        """Remove the hub's folder; its log is kept as ``results/logs/<folder>.log``."""
        log = self.folder / "hub.log"
        if log.exists():
            kept = report.RESULTS / "logs"
            kept.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, kept / f"{self.folder.name}.log")
        shutil.rmtree(self.folder, ignore_errors=True)


def end_leftovers(pids: set[int], since: float, grace: float = 10) -> list[int]:
    """End the processes among ``pids`` (started after ``since``) that outlived their hub:
    SIGTERM, then SIGKILL after ``grace`` seconds. Returns the pids that had to be ended."""
    mine = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            if proc.create_time() >= since - 1 and proc.status() != psutil.STATUS_ZOMBIE:
                mine.append(proc)
    for proc in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(mine, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    if mine:
        print(f"  ended {len(mine)} leftover processes of this run", flush=True)
    return [p.pid for p in mine]


def open_folder(prefix: str) -> Path:
    """A new folder below /tmp that the users' system accounts may enter."""
    folder = Path(tempfile.mkdtemp(prefix=f"kioskhub-bench-{prefix}-", dir="/tmp"))
    os.chmod(folder, 0o711)
    return folder


def start_kioskhub(
    prefix: str = "kiosk", timeout: float = 120, **site: Any
) -> BenchHub:
    """``kioskhub up`` on a fresh site config; ``site`` sections override or extend it."""
    began = time.time()
    folder = open_folder(prefix)
    write_sample_data(folder / "data")
    overrides = {
        "auth": {"shared_password": USER_PASSWORD, "admin_password": ADMIN_PASSWORD},
        **site,
    }
    config = write_site_config(folder, **overrides)
    handle = start_hub(config, folder / "hub.log", timeout=timeout)
    limits = {
        "concurrent_spawn_limit": DEFAULT_CONCURRENT_SPAWN_LIMIT,
        "active_server_limit": 0,
        "source": "JupyterHub defaults (KioskHub's site config does not set them)",
    }

    def restart(wait: float = timeout) -> HubProcess:
        return start_hub(config, folder / "hub.log", timeout=wait)

    return BenchHub("kioskhub", handle, folder, limits, restart, started_at=began)


def start_plain_jupyterhub(
    prefix: str = "plain",
    *,
    concurrent_spawn_limit: int = DEFAULT_CONCURRENT_SPAWN_LIMIT,
    cleanup_servers: bool = True,
    timeout: float = 120,
) -> BenchHub:
    """Plain JupyterHub with SimpleLocalProcessSpawner on free ports (see the module doc)."""
    began = time.time()
    folder = open_folder(prefix)
    (folder / "homes").mkdir()
    url = f"http://127.0.0.1:{free_port()}"
    proxy = shutil.which("configurable-http-proxy", path=kioskhub_env()["PATH"])
    if proxy is None:
        raise RuntimeError("configurable-http-proxy is missing: run `make up` or `npm ci` first")
    config = folder / "jupyterhub_config.py"
    config.write_text(
        PLAIN_CONFIG.format(
            bind_url=url + "/",
            hub_port=free_port(),
            proxy_api=f"http://127.0.0.1:{free_port()}",
            proxy=proxy,
            proxy_pid=str(folder / "proxy.pid"),
            db_url=f"sqlite:///{folder / 'jupyterhub.sqlite'}",
            cookie_secret=str(folder / "jupyterhub_cookie_secret"),
            pid_file=str(folder / "jupyterhub.pid"),
            cleanup_servers=cleanup_servers,
            concurrent_spawn_limit=concurrent_spawn_limit,
            user_password=USER_PASSWORD,
            admin_password=ADMIN_PASSWORD,
            admin=ADMIN,
            homes=str(folder / "homes"),
            singleuser=str(Path(sys.executable).parent / "jupyterhub-singleuser"),
            start_timeout=120,
            http_timeout=60,
        )
    )
    log = folder / "hub.log"

    def launch(wait: float = timeout) -> HubProcess:
        with log.open("ab") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config)],
                stdout=handle,
                stderr=subprocess.STDOUT,
                cwd=folder,
                env=kioskhub_env(),
                start_new_session=True,
            )
        hub = HubProcess(config=config, url=url, process=process, log=log)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(
                    f"jupyterhub exited with {process.returncode}:\n{hub.log_text()}"
                )
            try:
                if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                    hub.record_descendants()
                    return hub
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        hub.stop()
        raise TimeoutError(f"plain jupyterhub at {url} did not answer within {wait}s")

    limits = {
        "concurrent_spawn_limit": concurrent_spawn_limit,
        "active_server_limit": 0,
        "source": "set in the generated jupyterhub_config.py",
    }
    return BenchHub("jupyterhub", launch(), folder, limits, launch, started_at=began)

