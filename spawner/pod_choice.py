"""The user's choice for pod backends: the same environments, profiles and mounts as locally.

``PodChoice`` is mixed into the pod spawners (``PodmanSpawner``, ``KioskKubeSpawner``): it
reads the site config and the build catalog, offers only what a pod can run (image
environments and KioskHub's own, which runs in the site image), and turns the choice into a
LaunchSpec exactly as the local backend does (``build_launch_spec``).
"""

from __future__ import annotations

from tornado import web
from traitlets import Instance
from traitlets.config import LoggingConfigurable

from kioskhub.hub.schema.choices import Environment
from kioskhub.hub.schema.site import Site
from kioskhub.image_builder.spawn_catalog import open_reader, site_for_user

from .launch_spec import ChoiceError, LaunchSpec, allowed, build_launch_spec
from .spawn_feedback import ChoiceSummary
from .spawn_form import options_from_form, render_spawn_form


def runs_in_a_pod(environment: Environment) -> bool:
    """Whether a pod can run ``environment``: an image, or KioskHub's own (the site image)."""
    return environment.kind == "image" or (environment.kind == "venv" and environment.path is None)


class PodChoice(ChoiceSummary, LoggingConfigurable):
    """The choice (environment × profile × mounts) → LaunchSpec part of a pod spawner."""

    site = Instance(Site, config=True, help="The validated site config (set by KioskHub).")

    isolation_warning = ""
    """Pods are isolated from each other; the home page has nothing to warn about."""

    gpus_available = True
    """Whether GPU profiles may be chosen; a backend without GPUs sets False."""

    def _groups(self) -> list[str]:
        return [group.name for group in self.user.groups]

    def user_site(self) -> Site:
        """The site as this user sees it: catalog environments added, only pod-runnable ones."""
        if not hasattr(self, "_catalog"):
            self._catalog = open_reader(self.site)
        site = site_for_user(self.site, self.user.name, self._groups(), self._catalog)
        runnable = tuple(e for e in site.environments if runs_in_a_pod(e))
        return site.model_copy(update={"environments": runnable or site.environments})

    def launch_spec(self, options=None) -> LaunchSpec:
        return build_launch_spec(
            self.user_site(),
            self.user.name,
            self._groups(),
            self.user_options if options is None else options,
            server_name=self.name,
            gpus_available=self.gpus_available,
        )

    def refuse_bad_choice(self, spawner, options) -> None:
        """JupyterHub's ``apply_user_options`` hook: a choice the user may not make is a 400."""
        self.check_choice(options)

    def check_choice(self, options) -> LaunchSpec:
        """The LaunchSpec of ``options``, or a 400 error with the reason for the user."""
        try:
            return self.launch_spec(options)
        except ChoiceError as error:
            raise web.HTTPError(400, "%s", str(error)) from None

    def render_choice_form(self) -> str:
        groups = self._groups()
        return render_spawn_form(
            allowed(self.user_site().environments, groups),
            allowed(self.site.profiles, groups),
            self.user_options or {},
        )

    def choice_from_form(self, formdata) -> dict:
        options = options_from_form(formdata)
        self.check_choice(options)
        return options
