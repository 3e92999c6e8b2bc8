"""A real dask-gateway-server outside any hub, configured as KioskHub configures it.

For running example notebooks with a plain kernel: the gateway uses KioskHub's backend
and options (``kioskhub.hub.dask_gateway.gateway_config``), with dask-gateway's own simple
authenticator in place of JupyterHub's, and clusters run as the test's own account.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from kioskhub.hub.dask_gateway import gateway_config
from kioskhub.hub.schema.dask import gateway_addresses
from kioskhub.hub.schema.site import Site
from tests.support.hub_process import free_port

SIMPLE_AUTH = "dask_gateway_server.auth.SimpleAuthenticator"


@dataclass
class GatewayProcess:
    process: subprocess.Popen
    env: dict[str, str]
    """The client environment that points ``Gateway()`` at this gateway."""
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_gateway(folder: Path, timeout: float = 60) -> GatewayProcess:
    """Start a gateway with its state under ``folder``; return it once its API answers."""
    site = Site.model_validate(
        {
            "hub": {"state_dir": "state"},
            "profiles": [{"name": "small", "default": True}],
            "dask": {
                "enabled": True,
                "idle_timeout": 300,
                "workers": {"worker_cores": 1, "worker_memory": "1G", "max_workers": 2},
                "ports": {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()},
            },
        },
        context={"base_dir": folder},
    )
    config = gateway_config(site, isolated=False, own_prefix=Path(sys.prefix))
    config["DaskGateway"]["authenticator_class"] = SIMPLE_AUTH
    (folder / "state" / "dask-gateway" / "clusters").mkdir(parents=True, exist_ok=True)
    config_path = folder / "state" / "dask-gateway" / "dask_gateway_config.json"
    config_path.write_text(json.dumps(config))
    log = folder / "gateway.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "dask_gateway_server", "--config", str(config_path)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=folder,
            start_new_session=True,
        )
    addresses = gateway_addresses(site)
    env = {
        "DASK_GATEWAY__ADDRESS": addresses.internal,
        "DASK_GATEWAY__PROXY_ADDRESS": addresses.scheduler_proxy,
        "DASK_GATEWAY__AUTH__TYPE": "basic",
        "DASK_GATEWAY__CLUSTER__OPTIONS__PROFILE": "small",
    }
    gateway = GatewayProcess(process=process, env=env, log=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{addresses.internal}/api/health", timeout=2).status_code == 200:
                return gateway
        except requests.ConnectionError:
            pass
        time.sleep(0.3)
    gateway.stop()
    raise TimeoutError(f"the gateway did not answer within {timeout}s:\n{log.read_text()}")
