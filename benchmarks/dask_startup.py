"""Dask: from ``Gateway().new_cluster()`` to 2 workers ready, KioskHub against plain
dask-gateway-server, same machine, same run.

- KioskHub: a hub with ``dask.enabled`` (the gateway runs as its service, clusters as the
  user's system account); a signed-in user starts their server and a kernel, and the
  kernel times the client code below with the defaults that the server's environment sets.
- Plain: ``python -m dask_gateway_server`` with a minimal generated config: its
  ``UnsafeLocalBackend`` (local processes as the gateway's account; upstream's
  ``LocalBackend`` cannot be used as root, see benchmarks/README.md), ``SimpleAuthenticator``,
  the same scheduler and worker commands and worker size; the same client code runs in a
  Python process of its own.

Repetitions alternate between the two; each cluster is shut down before the next.

    .venv/bin/python -m benchmarks.dask_startup --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from tests.support.hub_process import free_port

from . import report
from .hub_client import HubClient
from .hubs import USER_PASSWORD, open_folder, start_kioskhub
from .stats import ratio, summarize, verdict, within

NAME = "dask_startup"
TOLERANCE = 0.20
WORKERS = 2
USER = "daskbench"
SETUP = "import json, time\nfrom dask_gateway import Gateway, BasicAuth\n"
REP = """
t0 = time.perf_counter()
gateway = {gateway}
cluster = gateway.new_cluster()
t1 = time.perf_counter()
cluster.scale({workers})
client = cluster.get_client()
client.wait_for_workers({workers}, timeout=300)
t2 = time.perf_counter()
client.close()
cluster.shutdown()
t3 = time.perf_counter()
gateway.close()
print("RESULT " + json.dumps({{"new_cluster": t1 - t0, "ready": t2 - t0, "shutdown": t3 - t2}}))
"""
PLAIN_CONFIG = """\
# Plain dask-gateway-server for the benchmarks: generated, minimal.
c = get_config()  # noqa: F821
c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{http}"
c.Proxy.tcp_address = "127.0.0.1:{tcp}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = {password!r}
c.LocalBackend.clusters_directory = {clusters!r}
c.ClusterConfig.scheduler_cmd = [{dask!r}, "scheduler"]
c.ClusterConfig.worker_cmd = [{dask!r}, "worker"]
c.ClusterConfig.worker_cores = 1
c.ClusterConfig.worker_memory = "1 G"
c.ClusterConfig.scheduler_cores = 1
c.ClusterConfig.scheduler_memory = "1 G"
"""


def parse_result(output: str) -> dict:
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"no RESULT line in the output: {output[-800:]}")


class PlainGateway:
    """A plain dask-gateway-server process and the client code that talks to it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.http, tcp, api = free_port(), free_port(), free_port()
        self.password = "bench-gateway-password"
        clusters = folder / "clusters"
        clusters.mkdir(parents=True)
        config = folder / "dask_gateway_config.py"
        config.write_text(PLAIN_CONFIG.format(
            api=api, http=self.http, tcp=tcp, password=self.password, clusters=str(clusters),
            dask=str(Path(sys.executable).parent / "dask")))
        self.proxy = f"gateway://127.0.0.1:{tcp}"
        self.log = (folder / "gateway.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dask_gateway_server", "--config", str(config)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dask-gateway-server exited: {self.process.returncode}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"http://127.0.0.1:{self.http}/api/health", timeout=2).ok:
                    return
            time.sleep(0.3)
        raise TimeoutError("dask-gateway-server did not answer within 60 s")

    def run_once(self) -> dict:
        gateway = (f"Gateway(address='http://127.0.0.1:{self.http}', "
                   f"proxy_address='{self.proxy}', "
                   f"auth=BasicAuth('{USER}', '{self.password}'))")
        code = SETUP + REP.format(gateway=gateway, workers=WORKERS)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=600, cwd=self.folder)
        if out.returncode != 0:
            raise RuntimeError(f"client failed: {out.stderr[-1500:]}")
        return parse_result(out.stdout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


def remove_scratch_space(account: str) -> None:
    """Remove what the benchmark user's clusters leave outside the hub's folder: dask's
    ``/tmp/dask-scratch-space-<uid>``, and the home folder that the account's passwd entry
    names: the home of the run that created the account, left behind by that run."""
    tmp = Path(tempfile.gettempdir())
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(account)
        scratch = tmp / f"dask-scratch-space-{entry.pw_uid}"
        if scratch.is_dir() and scratch.owner() == account:
            shutil.rmtree(scratch, ignore_errors=True)
        for folder in Path(entry.pw_dir).parents:
            if folder.parent == tmp and folder.name.startswith("kioskhub-bench-"):
                shutil.rmtree(folder, ignore_errors=True)


async def kiosk_session(hub_url: str) -> tuple[HubClient, str]:
    """A signed-in user with a running server and a kernel that has imported the client."""
    client = HubClient(hub_url)
    await client.login(USER, USER_PASSWORD)
    await client.request_token(USER)
    outcome = await client.spawn(USER)
    if not outcome.ok:
        raise RuntimeError(f"spawning {USER} failed: {outcome.error}")
    kernel = await client.start_kernel(USER)
    await client.execute(USER, kernel, SETUP, timeout=120)
    return client, kernel


async def run(args) -> dict:
    cond = report.conditions(repeat=args.repeat, workers=WORKERS, worker_cores=1,
                             worker_memory="1G")
    print(report.conditions_line(cond), flush=True)
    samples: dict[str, list[dict]] = {"kioskhub": [], "dask-gateway-server": []}
    errors: list[str] = []
    hub = plain = client = None
    try:
        report.progress("starting KioskHub with dask.enabled")
        hub = start_kioskhub("dask", dask={
            "enabled": True,
            "workers": {"worker_cores": 1, "worker_memory": "1G", "max_workers": WORKERS},
            "scheduler": {"cores": 1, "memory": "1G"},
            "ports": {"http": free_port(), "scheduler_proxy": free_port(), "api": free_port()},
        })
        report.progress(f"  {USER}: sign in, start the server and a kernel")
        client, kernel = await kiosk_session(hub.url)
        report.progress("starting plain dask-gateway-server")
        plain = PlainGateway(open_folder("dask-plain"))
        kiosk_code = REP.format(gateway="Gateway()", workers=WORKERS)
        for i in range(args.repeat):
            for kind in ("kioskhub", "dask-gateway-server")[:: 1 if i % 2 == 0 else -1]:
                try:
                    if kind == "kioskhub":
                        output = await client.execute(USER, kernel, kiosk_code, timeout=600)
                        result = parse_result(output)
                    else:
                        result = await asyncio.to_thread(plain.run_once)
                except Exception as error:
                    errors.append(f"{kind} #{i + 1}: {error}")
                    report.progress(f"  {kind:20s} #{i + 1}: FAILED {error}")
                    continue
                samples[kind].append(result)
                report.progress(f"  {kind:20s} #{i + 1}: new_cluster {result['new_cluster']:.2f} s,"
                                f" {WORKERS} workers ready {result['ready']:.2f} s")
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                await client.stop(USER)
            await client.close()
        if plain is not None:
            plain.stop()
            shutil.rmtree(plain.folder, ignore_errors=True)
        if hub is not None:
            report.progress("stopping KioskHub")
            with contextlib.suppress(Exception):
                hub.stop()
            hub.remove()
            remove_scratch_space(f"kh-{USER}")
    summary = {kind: {key: summarize([s[key] for s in values])
                      for key in ("new_cluster", "ready", "shutdown")}
               for kind, values in samples.items()}
    kiosk = summary["kioskhub"]["ready"]["p50"]
    base = summary["dask-gateway-server"]["ready"]["p50"]
    check = {"target": f"KioskHub p50 within {TOLERANCE:.0%} of plain dask-gateway-server",
             "ratio": ratio(kiosk, base), "met": within(kiosk, base, TOLERANCE)}
    print()
    print(report.conditions_line(cond))
    rows = [[kind, s["ready"]["count"], s["new_cluster"]["p50"], s["ready"]["p50"],
             s["ready"]["max"], s["shutdown"]["p50"]] for kind, s in summary.items()]
    report.print_table(["gateway", "runs", "new_cluster p50 s", "2 workers p50 s",
                        "2 workers max s", "shutdown p50 s"], rows,
                       title="Dask: new_cluster() → 2 workers ready")
    ratio_text = "-" if check["ratio"] is None else f"×{check['ratio']:.2f}"
    print(f"target {check['target']}: {verdict(check['met'])} ({ratio_text})")
    for error in errors:
        print(f"error: {error}")
    result = {"benchmark": NAME, "conditions": cond, "samples": samples, "summary": summary,
              "targets": [check], "errors": errors}
    report.write_json(NAME, result)
    plot(samples, cond)
    return result


def plot(samples: dict[str, list[dict]], cond: dict) -> None:
    figure, axes = report.new_figure(1, width=6, height=4.5)
    ax = axes[0]
    kinds = list(samples)
    for i, kind in enumerate(kinds):
        ready = [s["ready"] for s in samples[kind]]
        new = [s["new_cluster"] for s in samples[kind]]
        ax.plot([i - 0.1] * len(new), new, "s", alpha=0.6, color="tab:gray",
                label="new_cluster() returned" if i == 0 else None)
        ax.plot([i + 0.1] * len(ready), ready, "o", alpha=0.8, color="tab:blue",
                label=f"{WORKERS} workers ready" if i == 0 else None)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_ylabel("seconds after Gateway()")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("Dask cluster start")
    figure.text(0.01, 0.005, report.caption(cond), fontsize=6, wrap=True)
    report.save_figure(NAME, figure)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", "-r", type=int, default=3, help="clusters per gateway (3)")
    return p


def main(argv: list[str] | None = None) -> int:
    asyncio.run(run(parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
