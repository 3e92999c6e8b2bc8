"""Warn the user inside JupyterLab before the hub's idle culler stops their server.

The spawner tells a server its culling limits in its environment: ``KIOSKHUB_CULL_TIMEOUT``
(idle seconds), ``KIOSKHUB_CULL_MAX_AGE`` (seconds from start, 0: none),
``KIOSKHUB_CULL_WARN`` (seconds of warning), ``JUPYTERHUB_ACTIVITY_INTERVAL`` (how
often the server reports activity to the hub) and ``KIOSKHUB_SERVER_STARTED`` (when the
hub started it). This server extension

- answers ``GET <base_url>kioskhub/culling`` with the time left before the server is
  stopped, why, and the warning to show (or null); asking does not count as activity;
- hands JupyterLab a small plugin (written into the server's runtime folder, and added to
  JupyterLab's ``extra_labextensions_path``) that asks that endpoint while its tab is shown
  and shows the warning as a JupyterLab notification (dismissed once the user is active
  again); a hidden tab does not ask, since the hub counts every request through its proxy
  as activity, and shows the warning when it falls due.

Enable it in a server with::

    --ServerApp.jpserver_extensions=kioskhub.extensions.cull_notice=True

Without the variables (culling off) the endpoint answers ``{"enabled": false}``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

LAB_EXTENSION = "kioskhub-cull-notice"
ENDPOINT = "kioskhub/culling"


@dataclass(frozen=True)
class CullLimits:
    """This server's culling limits, in seconds, as the spawner gave them."""

    timeout: int
    max_age: int = 0
    warn_before: int = 0
    activity_interval: int = 0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CullLimits | None:
        """The limits from the server's environment; None when culling is off."""

        def seconds(name: str) -> int:
            value = environ.get(name, "").strip()
            return int(value) if value.isdigit() else 0

        timeout = seconds("KIOSKHUB_CULL_TIMEOUT")
        if not timeout:
            return None
        return cls(
            timeout=timeout,
            max_age=seconds("KIOSKHUB_CULL_MAX_AGE"),
            warn_before=seconds("KIOSKHUB_CULL_WARN"),
            activity_interval=seconds("JUPYTERHUB_ACTIVITY_INTERVAL"),
        )


def minutes_text(seconds: float) -> str:
    """ "about 5 minutes", "about 1 minute", "less than a minute"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    return f"about {minutes} minute{'s' if minutes != 1 else ''}"


def warning_text(reason: str, seconds_left: float) -> str:
    """The notice JupyterLab shows ``seconds_left`` before the server is culled."""
    if reason == "idle":
        return (
            f"Your server has been idle and will be stopped in {minutes_text(seconds_left)}. "
            "Save your work; any activity, such as running a cell, keeps it running."
        )
    return (
        f"Your server reaches its maximum running time and will be stopped in "
        f"{minutes_text(seconds_left)}. Save your work; you can start it again afterwards."
    )


def culling_state(
    limits: CullLimits, last_activity: datetime, started: datetime, now: datetime
) -> dict:
    """What the endpoint answers: the seconds left, the reason, and the warning or None.

    The hub hears of activity once per activity interval, so its idea of the last
    activity may be that much older than the server's: the time left is counted from it.
    Before the warning, ``warning_due`` says when it comes and what it will say, so that
    a hidden JupyterLab tab can show it without asking again.
    """
    idle = (now - last_activity).total_seconds()
    idle_left = limits.timeout - idle - limits.activity_interval
    age_left = limits.max_age - (now - started).total_seconds() if limits.max_age else None
    reason, left = "idle", idle_left
    if age_left is not None and age_left < idle_left:
        reason, left = "max_age", age_left
    left = max(0, int(left))
    warning = warning_due = None
    if limits.warn_before and left <= limits.warn_before:
        warning = warning_text(reason, left)
    elif limits.warn_before:
        due = left - limits.warn_before
        warning_due = {"in_seconds": due, "text": warning_text(reason, limits.warn_before)}
    return {
        "enabled": True,
        "timeout": limits.timeout,
        "max_age": limits.max_age,
        "warn_before": limits.warn_before,
        "seconds_left": left,
        "reason": reason,
        "warning": warning,
        "warning_due": warning_due,
        "poll_seconds": max(1, min(30, limits.warn_before // 4 or 30)),
    }


def hub_started(environ: Mapping[str, str]) -> datetime | None:
    """When the hub started this server (``KIOSKHUB_SERVER_STARTED``): the maximum age
    counts from there, before the server process itself started."""
    try:
        return datetime.fromisoformat(environ["KIOSKHUB_SERVER_STARTED"])
    except (KeyError, ValueError):
        return None


class CullingHandler(APIHandler):
    """``GET kioskhub/culling``: the time left before culling, as JSON."""

    auth_resource = "api"
    _track_activity = False  # asking must not keep an idle server alive

    @web.authenticated
    @authorized
    def get(self) -> None:
        limits = CullLimits.from_environ(os.environ)
        if limits is None:
            self.finish(json.dumps({"enabled": False}))
            return
        now = datetime.now(UTC)
        started = hub_started(os.environ) or self.settings.get("started", now)
        last_activity = self.application.last_activity()
        self.finish(json.dumps(culling_state(limits, last_activity, started, now)))


# --- the JupyterLab side ------------------------------------------------------------------

def lab_package(name: str, description: str) -> dict:
    """The package.json of a hand-written JupyterLab plugin."""
    return {
        "name": name,
        "version": "1.0.0",
        "description": description,
        "jupyterlab": {"_build": {"load": "static/remoteEntry.js", "extension": "./extension"}},
    }


SERVER_REQUEST_JS = """\
  // As JupyterLab's own requests: the hub's servers want the XSRF token on API requests
  // that a cookie authenticates, GET included. ``init``: fetch's, for other methods.
  function serverRequest(app, url, init) {
    const settings = app.serviceManager.serverSettings;
    const xsrf = document.cookie.split("; ").find((c) => c.startsWith("_xsrf="));
    const headers = Object.assign({}, (init && init.headers) || {});
    if (settings.token) headers.Authorization = "token " + settings.token;
    if (xsrf) headers["X-XSRFToken"] = xsrf.slice("_xsrf=".length);
    return fetch(url, Object.assign({}, init || {}, { credentials: "same-origin", headers }));
  }
"""
"""A function for a plugin's script: ``serverRequest(app, url[, init])`` asks its server
(GET, or what fetch's ``init`` says)."""

PACKAGE_JSON = lab_package(
    LAB_EXTENSION, "Warns before the server is stopped for being idle or too old."
)

# A federated extension container as JupyterLab loads one (init, then get("./extension")),
# written by hand: the plugin needs nothing shared, only JupyterLab's notification commands.
REMOTE_ENTRY = """\
(function () {
  "use strict";
""" + SERVER_REQUEST_JS + """\
  const plugin = {
    id: "kioskhub-cull-notice:plugin",
    description: "Warns before the server is stopped for being idle or too old.",
    autoStart: true,
    activate: (app) => {
      const config = JSON.parse(
        document.getElementById("jupyter-config-data").textContent || "{}");
      const url = (config.baseUrl || "/") + "kioskhub/culling";
      let shown = null;
      let timer = null;
      async function show(message) {
        const options = { autoClose: false, data: { kioskhub: "cull-notice" } };
        if (shown === null) {
          shown = await app.commands.execute("apputils:notify",
            { message, type: "warning", options });
        } else {
          await app.commands.execute("apputils:update-notification",
            { id: shown, message, type: "warning", options });
        }
      }
      async function dismiss() {
        if (shown !== null) {
          await app.commands.execute("apputils:dismiss-notification", { id: shown });
          shown = null;
        }
      }
      // Ask only while the tab is shown: every request through the hub's proxy counts as
      // activity, and a hidden tab must not keep an idle server alive. A hidden tab shows
      // the warning from what it last heard, when it falls due.
      async function check() {
        clearTimeout(timer);
        if (document.visibilityState !== "visible") return;
        let state;
        try {
          const reply = await serverRequest(app, url);
          state = reply.ok ? await reply.json() : null;
        } catch (error) {
          state = null;
        }
        if (state === null) {
          timer = setTimeout(check, 30000);
          return;
        }
        if (!state.enabled) return;
        if (state.warning) {
          await show(state.warning);
        } else {
          await dismiss();
        }
        timer = setTimeout(() => {
          if (document.visibilityState === "visible") {
            check();
          } else if (state.warning_due) {
            timer = setTimeout(() => show(state.warning_due.text),
              Math.max(0, state.warning_due.in_seconds - state.poll_seconds) * 1000);
          }
        }, state.poll_seconds * 1000);
      }
      document.addEventListener("visibilitychange", check);
      app.restored.then(check);  // the notification commands are registered by then
    },
  };
  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB["kioskhub-cull-notice"] = {
    init: () => Promise.resolve(),
    get: () => Promise.resolve(() => ({ __esModule: true, default: plugin })),
  };
})();
"""


LAB_EXTENSIONS_FOLDER = "kioskhub-labextensions"
"""The folder of the server's runtime folder that holds KioskHub's JupyterLab plugins."""


def write_lab_extension(folder: Path, package: dict, remote_entry: str) -> Path:
    """Write a hand-written JupyterLab plugin (``package``'s name) under ``folder`` (a
    labextensions folder) and return the folder."""
    target = folder / package["name"]
    (target / "static").mkdir(parents=True, exist_ok=True)
    (target / "package.json").write_text(json.dumps(package, indent=2))
    (target / "static" / "remoteEntry.js").write_text(remote_entry)
    return folder


def add_lab_extension(serverapp, package: dict, remote_entry: str) -> bool:
    """Write a plugin into the server's runtime folder and add that folder to JupyterLab's
    ``extra_labextensions_path``, before JupyterLab sets up its handlers (call it from an
    extension's ``_link_jupyter_server_extension``). False (logged) if it cannot be written."""
    try:
        folder = write_lab_extension(
            Path(serverapp.runtime_dir) / LAB_EXTENSIONS_FOLDER, package, remote_entry
        )
    except OSError as error:
        serverapp.log.warning("%s: JupyterLab plugin not written: %s", package["name"], error)
        return False
    for app in serverapp.extension_manager.extension_apps.get("jupyterlab", ()):
        if str(folder) not in app.extra_labextensions_path:
            app.extra_labextensions_path = [*app.extra_labextensions_path, str(folder)]
    return True


def _jupyter_server_extension_points():
    return [{"module": "kioskhub.extensions.cull_notice"}]


def _link_jupyter_server_extension(serverapp) -> None:
    add_lab_extension(serverapp, PACKAGE_JSON, REMOTE_ENTRY)


def _load_jupyter_server_extension(serverapp) -> None:
    pattern = url_path_join(serverapp.base_url, ENDPOINT)
    serverapp.web_app.add_handlers(".*$", [(pattern, CullingHandler)])
    if CullLimits.from_environ(os.environ) is None:
        serverapp.log.info("cull_notice: culling is off for this server")
    else:
        serverapp.log.info("cull_notice: JupyterLab warns before this server is culled")
