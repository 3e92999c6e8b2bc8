"""Which kernels a forked server's zygote forks, and that its parent may import them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kioskhub.spawner import fork_parent
from kioskhub.spawner.fork_choice import KERNEL_MODULES
from kioskhub.spawner.fork_servers import ForkServers
from kioskhub.spawner.forked_kernels import kernel_fork_refusal

PYTHON = "/opt/env/bin/python"
CMD = [PYTHON, "-m", "ipykernel_launcher", "-f", "/run/user/kernel-1.json"]
SERVER_ENV = {"PATH": "/opt/env/bin:/usr/bin", "PYTHONUNBUFFERED": "1", "HOME": "/home/ada"}


def refusal(cmd=CMD, **options):
    options.setdefault("env", {**SERVER_ENV, "JPY_PARENT_PID": "7"})
    return kernel_fork_refusal(cmd, options, SERVER_ENV, PYTHON)


def test_this_environments_ipykernel_is_forked():
    assert refusal() is None
    assert refusal(cwd="/home/ada/work", kernel_id="k1", extra_arguments=[]) is None
    # Options of the kernel's own: it reads them as a fresh kernel does.
    assert refusal([*CMD, "--IPKernelApp.extra_extensions=kioskhub.extensions.data_reads"]) is None


def test_another_command_or_python_starts_a_new_process():
    def expected(command: str) -> str:
        return f"its command ({command}) is not {PYTHON} -m ipykernel_launcher -f FILE …"

    file = CMD[-1]
    assert refusal(["/usr/bin/python3", *CMD[1:]]) == expected(
        f"/usr/bin/python3 -m ipykernel_launcher -f {file}"
    )
    assert refusal([PYTHON, "-I", *CMD[1:]]) == expected(
        f"{PYTHON} -I -m ipykernel_launcher -f {file}"
    )
    assert refusal([PYTHON, "-m", "ipykernel_launcher"]) == expected(
        f"{PYTHON} -m ipykernel_launcher"
    )
    assert refusal(["R", "--slave", "-f", "a b"]) == expected("R --slave -f 'a b'")
    long = refusal([PYTHON, "-c", "x" * 400])
    assert long.startswith(f"its command ({PYTHON} -c xxx") and "x…) is not" in long


def test_popen_options_start_a_new_process():
    assert refusal(stdin=-1, independent=True) == "it is started with independent, stdin"


def test_an_environment_that_changes_how_python_starts_starts_a_new_process():
    changed = {**SERVER_ENV, "PYTHONPATH": "/home/ada/mods", "LD_PRELOAD": "/home/ada/x.so"}
    assert refusal(env=changed) == (
        "its environment changes how python starts (LD_PRELOAD, PYTHONPATH)"
    )
    unset = {k: v for k, v in SERVER_ENV.items() if k != "PYTHONUNBUFFERED"}
    assert refusal(env=unset) == "its environment changes how python starts (PYTHONUNBUFFERED)"
    assert refusal(env={**SERVER_ENV, "MY_SETTING": "x", "HOME": "/elsewhere"}) is None


def test_an_environment_for_the_preloaded_debugger_starts_a_new_process():
    debugging = {**SERVER_ENV, "PYDEVD_DEBUG": "True", "DEBUGPY_LOG_DIR": "/home/ada/logs"}
    assert refusal(env=debugging) == (
        "its environment sets what the debugger reads at import (DEBUGPY_LOG_DIR, PYDEVD_DEBUG)"
    )
    assert refusal(env={**SERVER_ENV, "IDE_PROJECT_ROOTS": "/home/ada"}) == (
        "its environment sets what the debugger reads at import (IDE_PROJECT_ROOTS)"
    )


def test_parents_import_the_kernel_only_when_kernels_are_forked(tmp_path):
    plain = ForkServers(tmp_path, ("ext",), as_root=True)
    kernels = ForkServers(tmp_path, ("ext",), as_root=True, fork_kernels=True)
    assert plain.preload == ("ext",)
    assert kernels.preload == ("ext", *KERNEL_MODULES)


def test_the_kernel_modules_leave_nothing_that_cannot_be_forked():
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(fork_parent.__file__).parent)!r})\n"
        "import fork_parent\n"
        f"modules = [*fork_parent.SERVER_MODULES, *{list(KERNEL_MODULES)!r}]\n"
        "fork_parent.preload(modules)\n"
        "fork_parent.discard_idle_loop()\n"
        "print(all(m in sys.modules for m in modules), fork_parent.fork_hazards(-1))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True []", out.stderr[-2000:]
