"""The builder service's web page: register a repository, follow builds live, share, launch.

Plain HTML and one small script (``static/environments.js``) that talks to the REST API; the
page itself only needs a signed-in user (HubOAuth redirects to the hub's login).
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from kioskhub.hub.schema.gallery import SEAT_PREFIX

from .service_api import SEAT_REFUSAL, BuilderState, hub_viewer

STATIC = Path(__file__).resolve().parent / "static"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Environments · KioskHub</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{prefix}static/environments.css">
</head>
<body data-config='{config}'>
<header><a href="/hub/home">KioskHub</a> · <strong>Environments</strong>
<span class="who">{user}{admin}</span></header>
<main>
<section>
<h1>Environments from your repositories</h1>
<p>Give a git repository with a <code>requirements.txt</code>, <code>environment.yml</code>
(pip packages), <code>pyproject.toml</code>/<code>setup.py</code>, <code>runtime.txt</code>
or <code>postBuild</code>. KioskHub builds it, pins it to the commit, and offers it in the
spawn form.</p>
<form id="register">
<label>Name <input name="name" required pattern="[a-z0-9][a-z0-9_\\-]{{0,31}}"
  placeholder="analysis"></label>
<label class="wide">Repository <input name="repository" required
  placeholder="https://gitlab.com/group/project.git"></label>
<label>Ref <input name="ref" placeholder="HEAD"></label>
<label>Subfolder <input name="subdir" placeholder=""></label>
<label>Builder <select name="builder">{builders}</select></label>
<label>Visible to <select name="visibility">{visibilities}</select></label>
<button type="submit">Register and build</button>
</form>
<p id="message" role="status"></p>
</section>
<section>
<h2>Your and shared environments</h2>
<table id="environments"><thead><tr><th>Name</th><th>Owner</th><th>Status</th>
<th>Source</th><th>Visible to</th><th>Actions</th></tr></thead><tbody></tbody></table>
</section>
<section id="build" hidden>
<h2>Build of <span id="build-name"></span></h2>
<div class="bar"><div id="progress"></div></div>
<p><span id="phase"></span> <span id="percent"></span></p>
<pre id="log"></pre>
</section>
</main>
<script src="{prefix}static/environments.js"></script>
</body></html>
"""

SEAT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Environments · KioskHub</title></head>
<body><main><h1>Environments</h1>
<p id="kh-environments-seat" role="alert">{message}.</p></main></body></html>
"""


class PageHandler(HubOAuthenticated, web.RequestHandler):
    """The page; any signed-in user (the API decides what they may do)."""

    def initialize(self, state: BuilderState) -> None:
        self.state = state

    @web.authenticated
    async def get(self):
        model = self.get_current_user()
        if model["name"].startswith(SEAT_PREFIX):
            self.set_status(403)
            self.finish(
                SEAT_PAGE.format(message=escape(SEAT_REFUSAL[0].upper() + SEAT_REFUSAL[1:]))
            )
            return
        viewer = await hub_viewer(self.hub_auth, model["name"])
        prefix = self.hub_auth.base_url
        groups = sorted(viewer.groups)
        visibilities = [("private", "only me")] + [(f"group:{g}", f"group {g}") for g in groups]
        if viewer.admin:
            visibilities.append(("site", "everyone"))
        config = {
            "prefix": prefix,
            "xsrf": self.xsrf_token.decode()
            if isinstance(self.xsrf_token, bytes)
            else self.xsrf_token,
            "user": viewer.name,
            "admin": viewer.admin,
            "groups": groups,
        }
        builders = [b for b in self.state.runner.builders if b != "site"]
        default = self.state.settings.default_builder
        self.finish(
            PAGE.format(
                prefix=escape(prefix),
                config=escape(json.dumps(config), quote=True),
                user=escape(viewer.name),
                admin=" (admin)" if viewer.admin else "",
                builders="".join(
                    f'<option value="{escape(b)}"{" selected" if b == default else ""}>'
                    f"{escape(b)}</option>"
                    for b in builders
                ),
                visibilities="".join(
                    f'<option value="{escape(v)}">{escape(t)}</option>' for v, t in visibilities
                ),
            )
        )


def page_routes(prefix: str, state: BuilderState) -> list[tuple]:
    return [
        (rf"{prefix}?", PageHandler, {"state": state}),
        (rf"{prefix}oauth_callback", HubOAuthCallbackHandler),
        (rf"{prefix}static/(.*)", web.StaticFileHandler, {"path": str(STATIC)}),
    ]
