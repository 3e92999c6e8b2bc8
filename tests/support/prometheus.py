"""A real Prometheus for the tests: Debian's ``prometheus`` program, not its service.

``LoopbackPrometheus`` starts ``prometheus`` with a config of its own (a free port on
127.0.0.1, its database in a folder of the test's) that scrapes a test hub's ``/hub/metrics``
and its builder service's metrics every second with a bearer token, and answers PromQL
through the HTTP API (``/api/v1/query``). A missing program fails the test, naming the package.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from .hub_process import free_port

PROMETHEUS_PROGRAM = "prometheus"
PROMETHEUS_PACKAGE = "prometheus"
HUB_JOB = "kioskhub"
BUILDER_JOB = "kioskhub-environments"
BUILDER_METRICS = "/services/environments/metrics"


def prometheus_program() -> str:
    """The Prometheus program, or the reason the tests cannot run it."""
    found = shutil.which(PROMETHEUS_PROGRAM)
    if not found:
        raise FileNotFoundError(
            f"{PROMETHEUS_PROGRAM} is not installed: run tests/require-system-packages as root "
            f"(apt-get install --no-install-recommends {PROMETHEUS_PACKAGE})"
        )
    return found


def scrape_config(hub_url: str, token_file: Path) -> dict:
    """Scrape the hub's ``/hub/metrics`` and the builder service's metrics every second,
    with the token in ``token_file``."""
    hub = urlsplit(hub_url)
    base = hub.path.rstrip("/")
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": job,
                "scheme": hub.scheme,
                "metrics_path": base + path,
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": [{"targets": [hub.netloc]}],
            }
            for job, path in ((HUB_JOB, "/hub/metrics"), (BUILDER_JOB, BUILDER_METRICS))
        ],
    }


class PrometheusError(RuntimeError):
    """Prometheus refused a query; the message is its own."""


class LoopbackPrometheus:
    """One Prometheus process scraping one hub; ``url`` is its HTTP API's base."""

    def __init__(self, folder: Path, hub_url: str, token: str) -> None:
        self.folder = folder
        self.hub_url = hub_url
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> LoopbackPrometheus:
        program = prometheus_program()
        self.folder.mkdir(parents=True, exist_ok=True)
        token_file = self.folder / "token"
        token_file.write_text(self.token)
        token_file.chmod(0o600)
        config = self.folder / "prometheus.yml"
        # JSON is YAML: Prometheus reads this file as its config.
        config.write_text(json.dumps(scrape_config(self.hub_url, token_file)))
        log = (self.folder / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                program,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"prometheus did not answer within {timeout}s: {self.log_tail()}")

    def query(self, expr: str) -> list[dict]:
        """The result vector of an instant query; PrometheusError if it does not parse."""
        reply = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = reply.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{expr!r}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]

    def targets(self) -> dict[str, str]:
        """Each scrape job's health and last error."""
        reply = requests.get(f"{self.url}/api/v1/targets", timeout=30).json()
        return {
            t["labels"]["job"]: f"{t['health']} {t['lastError']!r}"
            for t in reply["data"]["activeTargets"]
        }

    def wait_for(self, expr: str, timeout: float = 30) -> list[dict]:
        """Query ``expr`` until it returns data; TimeoutError naming the target's state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(expr)
            if result:
                return result
            time.sleep(0.5)
        raise TimeoutError(f"{expr!r} returned nothing in {timeout}s; targets: {self.targets()}")

    def log_tail(self, lines: int = 20) -> str:
        path = self.folder / "prometheus.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
