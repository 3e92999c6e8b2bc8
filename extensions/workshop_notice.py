"""Show a workshop teacher's broadcast messages inside the participant's JupyterLab.

This server extension

- answers ``GET <base_url>kioskhub/workshop-messages?since=<unix time>`` with the messages
  of the workshops the server's user takes part in, newer than ``since``: it asks the hub
  (``GET <JUPYTERHUB_API_URL>/workshops/messages``) with the server's own API token, which
  identifies the user; asking does not count as activity;
- hands JupyterLab a small plugin (written into the server's runtime folder, as
  ``cull_notice`` does) that asks that endpoint while its tab is shown and shows each new
  message as a JupyterLab notification, as text (JupyterLab escapes it). A long message
  gets a "Read all" action that opens it whole, again as text.

For a user in no workshop, or on a hub without workshops, the answer has no messages and
the plugin stops asking (``"enabled": false``). Enable it in a server with::

    --ServerApp.jpserver_extensions=kioskhub.extensions.workshop_notice=True
"""

from __future__ import annotations

import json
import os
from urllib.parse import urlencode

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient

from kioskhub.extensions.cull_notice import SERVER_REQUEST_JS, add_lab_extension, lab_package

LAB_EXTENSION = "kioskhub-workshop-notice"
ENDPOINT = "kioskhub/workshop-messages"
POLL_SECONDS = 15
HUB_TIMEOUT_S = 10
MAX_REPLY_BYTES = 2**20


def hub_messages_url(api_url: str, since: float) -> str:
    return f"{api_url.rstrip('/')}/workshops/messages?{urlencode({'since': repr(since)})}"


def requested_since(text: str | None) -> float:
    """``since`` from JupyterLab's request: Unix seconds, 0 when absent or not a time."""
    try:
        since = float(text or 0)
    except ValueError:
        return 0.0
    return since if 0 <= since < 1e11 else 0.0


def hub_answer(status: int, body: bytes) -> dict:
    """What the endpoint answers for the hub's reply (status, body)."""
    if status in (403, 404):
        # No workshops on this hub, or a token that cannot ask: nothing will ever come.
        return {"enabled": False, "messages": []}
    if status != 200 or len(body) > MAX_REPLY_BYTES:
        return {
            "enabled": True,
            "messages": [],
            "poll_seconds": POLL_SECONDS,
            "error": f"the hub answered {status}",
        }
    reply = json.loads(body)
    messages = [
        {
            "event_title": str(m.get("event_title", "")),
            "sender": str(m.get("sender", "")),
            "sent": float(m.get("sent", 0)),
            "text": str(m.get("text", "")),
        }
        for m in reply.get("messages", [])
        if isinstance(m, dict)
    ]
    return {"enabled": True, "messages": messages, "poll_seconds": POLL_SECONDS}


class WorkshopMessagesHandler(APIHandler):
    """``GET kioskhub/workshop-messages``: new broadcast messages, as JSON."""

    auth_resource = "api"
    _track_activity = False  # asking must not keep an idle server alive

    @web.authenticated
    @authorized
    async def get(self) -> None:
        api_url = os.environ.get("JUPYTERHUB_API_URL", "")
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not api_url or not token:
            self.finish(json.dumps({"enabled": False, "messages": []}))
            return
        since = requested_since(self.get_argument("since", None))
        reply = await AsyncHTTPClient().fetch(
            hub_messages_url(api_url, since),
            headers={"Authorization": f"token {token}"},
            request_timeout=HUB_TIMEOUT_S,
            raise_error=False,
        )
        if reply.code not in (200, 403, 404):
            self.log.warning("workshop_notice: the hub answered %s", reply.code)
        try:
            answer = hub_answer(reply.code, reply.body or b"")
        except (ValueError, TypeError, AttributeError):
            answer = hub_answer(502, b"")
        self.finish(json.dumps(answer))


# --- the JupyterLab side ------------------------------------------------------------------

PACKAGE_JSON = lab_package(LAB_EXTENSION, "Shows a workshop teacher's broadcast messages.")

# A federated extension container written by hand, as cull_notice's. Every text from the
# hub goes into the page as text (notifications, textContent), never as HTML.
REMOTE_ENTRY = """\
(function () {
  "use strict";
""" + SERVER_REQUEST_JS + """\
  const SHORT = 120;
  const READ = "kioskhub-workshop-notice:read";
  function openMessage(title, text) {
    const box = document.createElement("div");
    box.className = "kh-workshop-message";
    box.setAttribute("role", "dialog");
    box.style.cssText = "position:fixed;top:15%;left:50%;transform:translateX(-50%);" +
      "max-width:40em;max-height:60vh;overflow:auto;z-index:10000;padding:1em;" +
      "background:var(--jp-layout-color1);color:var(--jp-ui-font-color1);" +
      "border:1px solid var(--jp-border-color1);box-shadow:0 4px 16px rgba(0,0,0,.3)";
    const heading = document.createElement("h3");
    heading.textContent = title;
    const body = document.createElement("div");
    body.className = "kh-workshop-message-text";
    body.style.whiteSpace = "pre-wrap";
    body.textContent = text;
    const close = document.createElement("button");
    close.className = "jp-mod-styled jp-mod-accept";
    close.textContent = "Close";
    close.addEventListener("click", () => box.remove());
    box.append(heading, body, close);
    document.body.appendChild(box);
  }
  const plugin = {
    id: "kioskhub-workshop-notice:plugin",
    description: "Shows a workshop teacher's broadcast messages.",
    autoStart: true,
    activate: (app) => {
      const config = JSON.parse(
        document.getElementById("jupyter-config-data").textContent || "{}");
      const url = (config.baseUrl || "/") + "kioskhub/workshop-messages";
      const key = "kioskhub-workshop-notice:since:" + (config.baseUrl || "/");
      let since = Number(window.localStorage.getItem(key) || 0);
      let timer = null;
      let enabled = true;
      app.commands.addCommand(READ, {
        label: "Read all",
        execute: (args) => openMessage(String(args.title || ""), String(args.text || "")),
      });
      async function show(m) {
        const title = "Message from " + m.sender +
          (m.event_title ? " (" + m.event_title + ")" : "");
        const actions = m.text.length > SHORT
          ? [{ label: "Read all", commandId: READ, args: { title, text: m.text } }] : [];
        await app.commands.execute("apputils:notify", {
          message: title + ": " + m.text,
          type: "info",
          options: { autoClose: false, actions, data: { kioskhub: "workshop-notice" } },
        });
      }
      // Ask only while the tab is shown: every request through the hub's proxy counts as
      // activity, and a hidden tab must not keep an idle server alive.
      async function check() {
        clearTimeout(timer);
        if (!enabled || document.visibilityState !== "visible") return;
        let state = null;
        try {
          const reply = await serverRequest(app, url + "?since=" + encodeURIComponent(since));
          state = reply.ok ? await reply.json() : null;
        } catch (error) {
          state = null;
        }
        if (state !== null && !state.enabled) {
          enabled = false;
          return;
        }
        const messages = state === null ? [] : state.messages;
        for (const m of messages.slice(-5)) {
          await show(m);
        }
        for (const m of messages) {
          since = Math.max(since, m.sent);
        }
        window.localStorage.setItem(key, String(since));
        timer = setTimeout(check, ((state && state.poll_seconds) || 30) * 1000);
      }
      document.addEventListener("visibilitychange", check);
      app.restored.then(check);
    },
  };
  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB["kioskhub-workshop-notice"] = {
    init: () => Promise.resolve(),
    get: () => Promise.resolve(() => ({ __esModule: true, default: plugin })),
  };
})();
"""


def _jupyter_server_extension_points():
    return [{"module": "kioskhub.extensions.workshop_notice"}]


def _link_jupyter_server_extension(serverapp) -> None:
    add_lab_extension(serverapp, PACKAGE_JSON, REMOTE_ENTRY)


def _load_jupyter_server_extension(serverapp) -> None:
    pattern = url_path_join(serverapp.base_url, ENDPOINT)
    serverapp.web_app.add_handlers(".*$", [(pattern, WorkshopMessagesHandler)])
