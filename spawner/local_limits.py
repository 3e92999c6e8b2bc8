"""Memory, CPU and process limits of local servers, through the cgroups module.

A server whose profile cannot be enforced does not start unless the site said so:
where cgroups are unavailable (not root, no controller), the hub logs why once and
servers run unlimited.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from tornado import web

from . import cgroups
from .launch_spec import LaunchSpec

log = logging.getLogger("JupyterHub")


def limit_server(server_id: str, spec: LaunchSpec) -> cgroups.ServerCgroup | None:
    """Create the cgroups that hold ``server_id`` to ``spec``'s memory, CPU and processes."""
    unavailable = cgroups.cgroups_available()
    if unavailable:
        log.warning("Servers run without memory and CPU limits: %s", unavailable)
        return None
    layout = cgroups.current_layout()
    max_processes = spec.max_processes
    if max_processes is not None and layout.pids_dir is None:
        log.warning("Servers run without a process limit: no usable cgroup pids controller")
        max_processes = None
    plan = cgroups.plan_limits(server_id, spec.memory_bytes, spec.cpu, layout, max_processes)
    try:
        stale = cgroups.ServerCgroup(dirs=tuple(step.path for step in plan if step.kind == "group"))
        stale.remove()
        return cgroups.apply_limits(plan)
    except (cgroups.CgroupError, OSError) as error:
        raise web.HTTPError(
            500, "%s", f"Could not set the memory, CPU and process limits of the server: {error}"
        ) from None


def limits_state(group: cgroups.ServerCgroup | None) -> dict | None:
    return asdict(group) if group else None


def reattach_limits(state: dict | None) -> cgroups.ServerCgroup | None:
    """The ServerCgroup recorded in spawner state, after a hub restart."""
    if not state:
        return None
    return cgroups.ServerCgroup(dirs=tuple(state["dirs"]), memory_dir=state.get("memory_dir"))
