"""KioskSpawner's local backend: user servers as processes on the hub's machine.

Builds on JupyterHub's LocalProcessSpawner, which already starts, polls, signals
and re-adopts the process; this class supplies the LaunchSpec-derived home,
environment and arguments.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner
from traitlets import Instance, default

from hub.site_config import Site

from .home import prepare_home
from .launch_spec import LaunchSpec, build_launch_spec


class KioskSpawner(LocalProcessSpawner):
    """Start each user's JupyterLab as a local ``jupyterhub-singleuser`` process."""

    site = Instance(Site, config=True, help="The validated site config (set by KioskHub).")

    @default("cmd")
    def _default_cmd(self):
        return [str(Path(sys.executable).parent / "jupyterhub-singleuser")]

    @property
    def launch_spec(self) -> LaunchSpec:
        return build_launch_spec(self.site, self.user.name)

    async def start(self):
        spec = self.launch_spec
        copied = prepare_home(spec)
        if copied:
            self.log.info("Copied examples %s into %s", ", ".join(copied), spec.home)
        self.notebook_dir = str(spec.home)
        self.default_url = spec.default_url
        return await super().start()

    def get_args(self):
        args = super().get_args()
        if os.geteuid() == 0:
            args.append("--allow-root")
        return args

    def user_env(self, env):
        spec = self.launch_spec
        env.update(spec.env)
        env["USER"] = spec.username
        env["HOME"] = str(spec.home)
        env["SHELL"] = "/bin/bash"
        return env

    def make_preexec_fn(self, name):
        home = str(self.launch_spec.home)

        def enter_home():
            os.chdir(home)

        return enter_home

    async def move_certs(self, paths):
        return paths
