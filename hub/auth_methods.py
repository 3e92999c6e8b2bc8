"""More than one way in: each sign-in method is an Authenticator of its own, under its own URL
prefix, composed into the one authenticator JupyterHub runs.

``METHODS`` is the table: method name → the authenticator class and the function that
configures it from the site. A new method (workshop join codes) is one more row and its own
module; the others do not change. ``KioskMethodsAuthenticator`` builds one authenticator per
method the site enables, serves each one's pages under ``/hub/<method>/`` (so
``/hub/oidc/oauth_callback``) and shows every method on ``/hub/login``. It remembers in the
auth state which method signed a user in, and sends that user's refresh and spawn hooks to
that method only.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.utils import url_path_join
from traitlets import List, import_item

from .auth import ReservedUsernames

METHOD_KEY = "sign_in_method"
"""The auth state key that records which method signed the user in."""


@dataclass(frozen=True)
class SignInMethod:
    """One row of the table: where the method's authenticator and its settings live.

    ``settings`` names a function returning ``{class name: {trait: value}}``; it is called
    with the arguments named in ``needs`` (``site``, ``passwords``, ``oidc_endpoints``).
    Both are imported by name when used, so a method's module loads only where enabled.
    """

    authenticator_class: str
    settings: str
    needs: tuple[str, ...] = ("site",)
    routed_alone: bool = False
    """Served under ``/hub/<method>/`` even as the only method (its callback URL is there)."""

    def traits(self, **available: Any) -> dict[str, dict[str, Any]]:
        module, name = self.settings.rsplit(".", 1)
        function = getattr(import_module(module), name)
        return function(*(available[need] for need in self.needs))


METHODS: dict[str, SignInMethod] = {
    "shared-password": SignInMethod(
        "kioskhub.hub.auth.KioskAuthenticator",
        "kioskhub.hub.auth_settings.shared_password_config",
        ("site", "passwords"),
    ),
    "oidc": SignInMethod(
        "kioskhub.hub.auth_oidc.KioskOIDCAuthenticator",
        "kioskhub.hub.auth_oidc.oidc_authenticator_config",
        ("site", "oidc_endpoints"),
        routed_alone=True,
    ),
    "gitlab": SignInMethod(
        "kioskhub.hub.auth_gitlab.KioskGitLabAuthenticator",
        "kioskhub.hub.auth_settings.gitlab_config",
        routed_alone=True,
    ),
}


class KioskMethodsAuthenticator(ReservedUsernames, Authenticator):
    """Several sign-in methods side by side; JupyterHub sees one authenticator.

    Each method's authenticator gets the hub's config (its own class's section) and its
    handlers under ``/<method>``; its handlers use it, not this one, to sign users in.
    Everything else JupyterHub asks of "the" authenticator (refresh before a spawn, the spawn
    hooks, username rules) is answered here, by the method that signed the user in.
    """

    methods = List(
        config=True,
        help="[name, authenticator class] pairs, the main method first.",
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.by_method: dict[str, Authenticator] = {}
        for name, class_path in self.methods:
            cls = import_item(class_path)
            routed = type(f"Routed{cls.__name__}", (_RoutedMethod, cls), {"route": name})
            self.by_method[name] = routed(parent=self)
        self.manage_groups = any(a.manage_groups for a in self.by_method.values())

    # -- pages ------------------------------------------------------------------------------

    def get_handlers(self, app):
        routes = []
        for name, method in self.by_method.items():
            for path, handler in method.get_handlers(app):
                bound = type(handler.__name__, (handler,), {"authenticator": method})
                routes.append((url_path_join(f"/{name}", path), bound))
        return routes

    def get_custom_html(self, base_url: str) -> str:
        """Every method on the login page: a button per provider, the form for passwords.

        The result goes through Jinja (JupyterHub's login page), so braces are escaped.
        """
        parts = [method.login_html(base_url) for method in self.by_method.values()]
        return '<div id="kh-sign-in-methods">' + "\n".join(parts) + "</div>"

    # -- per user, by the method that signed them in ------------------------------------------

    async def _method_of(self, user) -> Authenticator | None:
        state = await user.get_auth_state() if self.enable_auth_state else None
        return self.by_method.get((state or {}).get(METHOD_KEY))

    async def refresh_user(self, user, handler=None, **kwargs):
        method = await self._method_of(user)
        if method is None:
            return True
        return method.tag(await method.refresh_user(user, handler, **kwargs))

    async def pre_spawn_start(self, user, spawner):
        method = await self._method_of(user)
        if method is not None:
            await _maybe_await(method.pre_spawn_start(user, spawner))

    async def post_spawn_stop(self, user, spawner):
        method = await self._method_of(user)
        if method is not None:
            await _maybe_await(method.post_spawn_stop(user, spawner))

    def check_allow_config(self) -> None:
        for method in self.by_method.values():
            method.check_allow_config()

    async def authenticate(self, handler, data):
        """Never reached: each method's pages sign users in with that method."""
        return None


class _RoutedMethod:
    """Mixed in front of a method's authenticator: its URLs under ``/<route>``, its name in
    the auth state, and its part of the login page."""

    route = ""

    def login_url(self, base_url: str) -> str:
        return super().login_url(url_path_join(base_url, self.route))

    def tag(self, auth_model):
        """``auth_model`` marked with this method (and explicit groups where the hub needs
        them); True/False/None pass through."""
        if not isinstance(auth_model, dict):
            return auth_model
        state = auth_model.get("auth_state") or {}
        tagged = {**auth_model, "auth_state": {**state, METHOD_KEY: self.route}}
        tagged.setdefault("groups", None)  # None: this method leaves groups as they are
        return tagged

    async def authenticate(self, handler, data=None, **kwargs):
        model = await _maybe_await(super().authenticate(handler, data, **kwargs))
        if isinstance(model, str):
            model = {"name": model}
        return self.tag(model)

    def login_html(self, base_url: str) -> str:
        url = self.login_url(base_url)
        label = _jinja_safe(html.escape(self.login_service or ""))
        if label:
            return (
                f'<div class="service-login kh-sign-in-{self.route}">'
                f'<a role="button" class="btn btn-jupyter btn-lg" href="{url}'
                '{% if next %}?next={{ next }}{% endif %}">'
                f"{label}</a></div>"
            )
        return PASSWORD_FORM.replace("ACTION", url)


PASSWORD_FORM = """
<form action="ACTION{% if next %}?next={{ next }}{% endif %}" method="post" role="form"
      class="kh-sign-in-password">
  <div class="auth-form-header"><h2>Or sign in with a username and password</h2></div>
  <div class="auth-form-body m-auto">
    <input type="hidden" name="_xsrf" value="{{ xsrf }}" />
    <label for="username_input">Username:</label>
    <input id="username_input" type="text" autocapitalize="off" autocorrect="off"
           autocomplete="username" class="form-control" name="username" />
    <label for="password_input">Password:</label>
    <input id="password_input" type="password" class="form-control"
           autocomplete="current-password" name="password" />
    <input id="login_submit" type="submit" class="btn btn-jupyter form-control"
           value="Sign in" />
  </div>
</form>
"""


def _jinja_safe(text: str) -> str:
    return text.replace("{", "&#123;").replace("}", "&#125;")


async def _maybe_await(value):
    if hasattr(value, "__await__"):
        return await value
    return value
