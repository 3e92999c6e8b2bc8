"""A plain ``jupyter server`` process on loopback, for testing KioskHub's server extensions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.hub_process import free_port


@dataclass
class JupyterServer:
    url: str
    token: str
    process: subprocess.Popen
    log: Path

    def api(self, path: str, method: str = "GET", token: str | None = None, **kwargs):
        headers = {"Authorization": f"token {self.token if token is None else token}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_jupyter_server(
    root: Path,
    log: Path,
    env: dict[str, str],
    arguments: list[str],
    preexec_fn: Callable[[], None] | None = None,
) -> JupyterServer:
    """``jupyter server`` serving ``root``; fails the test if it does not answer in 60 s."""
    token, port = uuid.uuid4().hex, free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--allow-root",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={port}",
                "--ServerApp.port_retries=0",
                f"--ServerApp.token={token}",
                f"--ServerApp.root_dir={root}",
                *arguments,
            ],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn,
            start_new_session=True,
        )
    server = JupyterServer(f"http://127.0.0.1:{port}", token, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyter server exited with {process.returncode}:\n{server.log_text()}")
        try:
            if server.api("/api/status").status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    stop_jupyter_server(server)
    pytest.fail(f"jupyter server did not answer within 60 s:\n{server.log_text()}")


def stop_jupyter_server(server: JupyterServer) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)  # jupyter server asks; a second one confirms
        time.sleep(0.2)
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
