"""Start and stop a real KioskHub (hub + configurable-http-proxy) the way `make up` does."""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


HANDED_OUT_PORTS: set[int] = set()
"""Ports this test process has handed out already: none is given twice."""


def free_port() -> int:
    """A loopback port nobody listens on, below the kernel's ephemeral range.

    Ports the kernel gives for ``bind(0)`` come from the range it also gives outgoing
    connections, so one picked that way can be taken by any connection (or handed out again)
    before the hub binds it; one below that range stays free until the test uses it.
    """
    outside = ports_outside_ephemeral_range()
    while True:
        port = random.choice(outside)
        if port in HANDED_OUT_PORTS:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        HANDED_OUT_PORTS.add(port)
        return port


@functools.cache
def ports_outside_ephemeral_range() -> tuple[int, ...]:
    first, last = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return (*range(20000, first), *range(last + 1, 65536)) or tuple(range(1024, first))


def write_site_config(folder: Path, **overrides) -> Path:
    """Write a kioskhub.yaml for a test hub on free ports, with its state under ``folder``."""
    config = {
        "hub": {
            "url": f"http://127.0.0.1:{free_port()}",
            "state_dir": "state",
            "admin_users": ["admin"],
            "internal_ports": {"hub": free_port(), "proxy_api": free_port()},
        },
        "auth": {"shared_password": "correct-horse-battery"},
        "home": {"root": "homes"},
        "data_mounts": [
            {"name": "data", "source": "data", "mount_path": str(folder / "mnt" / "data")}
        ],
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    path = folder / "kioskhub.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def kioskhub_env(venv_bin: Path = VENV_BIN) -> dict[str, str]:
    env = dict(os.environ)
    extra = env.pop("KIOSKHUB_TEST_EXTRA_PATH", "")
    parts = [extra, str(REPO / "node_modules" / ".bin"), str(venv_bin), env["PATH"]]
    env["PATH"] = os.pathsep.join(part for part in parts if part)
    return env


@dataclass
class HubProcess:
    """A running `kioskhub up`, its URL, and every process it started."""

    config: Path
    url: str
    process: subprocess.Popen
    log: Path
    seen_pids: set[int] = field(default_factory=set)

    def api(self, path: str, token: str, method: str = "GET", **kwargs) -> requests.Response:
        headers = {"Authorization": f"token {token}", **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs
        )

    def record_descendants(self) -> set[int]:
        """Remember every process below the hub, so a later check can prove they are gone."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return self.seen_pids
        self.seen_pids |= {child.pid for child in children} | {self.process.pid}
        return self.seen_pids

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> int:
        """Stop the hub as Ctrl-C does and return its exit code."""
        self.record_descendants()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise

    def leftover_processes(self, grace: float = 10) -> list[str]:
        """Processes started by this hub that are still alive after ``grace`` seconds."""
        deadline = time.monotonic() + grace
        while True:
            alive = []
            for pid in self.seen_pids:
                try:
                    proc = psutil.Process(pid)
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        alive.append(f"{pid}: {' '.join(proc.cmdline())}")
                except psutil.NoSuchProcess:
                    pass
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.5)


def start_hub(
    config: Path,
    log: Path,
    timeout: float = 60,
    venv_bin: Path = VENV_BIN,
    cwd: Path | None = None,
) -> HubProcess:
    """Run `kioskhub up` on ``config`` and wait until the hub answers through the proxy.

    ``venv_bin`` is the venv whose `kioskhub` runs (another release's, for upgrades),
    ``cwd`` its working folder (default: the test's).
    """
    site = yaml.safe_load(config.read_text())
    url = site["hub"]["url"]
    handle = log.open("ab")
    process = subprocess.Popen(
        [str(venv_bin / "kioskhub"), "up", "--config", str(config)],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=kioskhub_env(venv_bin),
        cwd=cwd,
        start_new_session=True,
    )
    hub = HubProcess(config=config, url=url, process=process, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kioskhub up exited with {process.returncode}:\n{hub.log_text()}")
        try:
            if requests.get(f"{url}/hub/api/", timeout=2).status_code == 200:
                hub.record_descendants()
                return hub
        except (requests.ConnectionError, requests.Timeout):  # not up yet, or slow to answer
            pass
        time.sleep(0.3)
    hub.stop(signal.SIGKILL)
    raise TimeoutError(f"hub at {url} did not answer within {timeout}s:\n{hub.log_text()}")


def remove_test_site(hub: HubProcess, folder: Path) -> None:
    """Stop the hub if it still runs, kill servers left under ``folder``, remove it.

    For tests that keep servers across a hub restart (``cleanup_servers: false``).
    """
    if hub.process.poll() is None:
        hub.stop()
    remove_site_folder(folder)


def remove_site_folder(folder: Path) -> None:
    """Kill the processes whose home is under ``folder`` (servers left behind), remove it."""
    for proc in psutil.process_iter(["environ"]):
        try:
            if (proc.info["environ"] or {}).get("HOME", "").startswith(str(folder)):
                proc.kill()
        except psutil.Error:
            continue
    shutil.rmtree(folder, ignore_errors=True)
