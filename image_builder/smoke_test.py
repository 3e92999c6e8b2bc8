"""Does a built environment work? Its server command answers, and a kernel runs code.

The kernel check runs *inside* the built environment: its own Python starts a kernel with
jupyter_client's KernelManager and executes ``1+1``, expecting ``2`` back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

from .build_log import BuildLog
from .build_sandbox import BuildAccount, run_step
from .builder_base import BuildFailed

KERNEL_CHECK = """
import sys
from jupyter_client.manager import start_new_kernel

km, kc = start_new_kernel(kernel_name="python3", startup_timeout=90)
results = []
def keep(msg):
    if msg["msg_type"] == "execute_result":
        results.append(msg["content"]["data"].get("text/plain"))
try:
    reply = kc.execute_interactive("1+1", timeout=60, output_hook=keep)
    status = reply["content"]["status"]
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
print(f"kernel said 1+1 = {results[0] if results else None} (status {status})")
sys.exit(0 if status == "ok" and results == ["2"] else 1)
"""


async def smoke_test(
    prefix: Path,
    *,
    log: BuildLog,
    account: BuildAccount,
    cwd: Path,
    env: Mapping[str, str],
    check_server: bool = True,
) -> None:
    """Raise BuildFailed unless a kernel computes 1+1 and the server answers --version.

    The two checks run side by side. ``check_server=False`` leaves out the server's: for an
    environment whose server packages are the tested server layer's, unchanged.
    """
    run_env = {
        **env,
        "PATH": f"{prefix / 'bin'}:{env['PATH']}",
        "VIRTUAL_ENV": str(prefix),
        "JUPYTER_PLATFORM_DIRS": "1",
    }

    async def server() -> None:
        status, output = await run_step(
            [str(prefix / "bin" / "jupyterhub-singleuser"), "--version"],
            log=log,
            account=account,
            cwd=cwd,
            env=run_env,
            timeout=120,
        )
        if status != 0:
            raise BuildFailed(
                f"the built environment's server command failed (exit {status}): "
                f"{_last(output)}; do the requirements conflict with jupyterhub or jupyterlab?"
            )

    async def kernel() -> None:
        status, output = await run_step(
            [str(prefix / "bin" / "python"), "-c", KERNEL_CHECK],
            log=log,
            account=account,
            cwd=cwd,
            env=run_env,
            timeout=180,
            echo=False,
        )
        if status != 0:
            raise BuildFailed(f"a kernel in the built environment did not run 1+1: {_last(output)}")

    if not check_server:
        log.line("The server packages are the server layer's, unchanged: checking a kernel.")
        await kernel()
        return
    try:
        async with asyncio.TaskGroup() as checks:
            checks.create_task(server())
            checks.create_task(kernel())
    except* BuildFailed as failed:
        raise failed.exceptions[0] from None


def _last(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return " / ".join(lines[-3:]) or "no output"
