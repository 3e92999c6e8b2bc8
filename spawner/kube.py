"""KioskKubeSpawner: user servers as pods in a Kubernetes cluster, through KubeSpawner.

KubeSpawner does the talking to the cluster (create the claim and the pod, watch pods and
events, report progress, delete, keep its versioned state for restarts). KioskHub supplies
what to run from the same site config as every other backend, on ``SpawnBackend``'s steps
(base.py): the choice is checked and the LaunchSpec built once, then ``launch`` is
KubeSpawner's own start, whose claim and pod are KioskHub's shared manifests
(``pod_manifest``), the very ones ``podman kube play`` runs on one machine.

``profile_list`` is generated from the site's profiles and the user's environments
(``kube_profiles``), filtered by the user's groups, so the spawn form and KubeSpawner's own
traits match the model; launch links and the REST API take the same
``{"environment", "profile"}`` options.

While KubeSpawner waits for the pod to run, the pod's status is watched: an image the
cluster cannot pull fails the start at once, and a pod no node can take fails it just
before the start times out, each with a message that says why and what to do
(``kube_start_problems``), which the spawn page shows. User pods reach the hub's API at
``pods.hub_connect_url`` (e.g. the hub's Service), when the site sets one.

The cluster is reached as kubernetes_asyncio finds it: in-cluster service account, or the
kubeconfig named by ``KUBECONFIG`` (else ``~/.kube/config``) when the hub starts.
"""

from __future__ import annotations

import asyncio

from kubespawner import KubeSpawner
from tornado import web
from traitlets import default

from .base import SpawnBackend
from .kube_profiles import profile_list
from .kube_start_problems import image_problem, scheduling_problem
from .launch_spec import ChoiceError, LaunchSpec
from .pod_manifest import PodTarget, environment_image, home_claim_model, pod_model
from .podman import POD_KINDS
from .spawn_form import options_from_form as kiosk_options_from_form

WATCH_INTERVAL = 0.5
"""Seconds between looks at the starting pod's status."""


class PodNotStarting(web.HTTPError):
    """The pod cannot start; the message (shown on the spawn page) says why."""

    def __init__(self, message: str):
        super().__init__(500, "%s", message)
        self.jupyterhub_message = message


class KioskKubeSpawner(SpawnBackend, KubeSpawner):
    """KubeSpawner that launches KioskHub's LaunchSpec as KioskHub's Pod manifest."""

    runnable_kinds = POD_KINDS
    backend_name = "kubernetes"
    waits_for_answer = False
    """KubeSpawner waits for the pod to run; JupyterHub then waits for it to answer."""

    progress = KubeSpawner.progress
    """Progress comes from the pod's events, as KubeSpawner reports them."""

    @default("options_form")
    def _default_options_form(self):
        return KubeSpawner._options_form_default(self)

    @default("profile_list")
    def _default_profile_list(self):
        return KioskKubeSpawner._user_profile_list

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    def gpus_available(self) -> bool:
        return True

    async def _user_profile_list(self) -> list[dict]:
        """During a start, the environments its choice was checked against; else fresh."""
        starting = getattr(self, "_starting", False)
        environments = self.checked_environments if starting else None
        return self.site_profile_list(environments or await self.user_environments())

    def site_profile_list(self, environments=None) -> list[dict]:
        """The profile_list for this spawner's user (their groups decide what is offered).

        ``environments`` default to the site config's; the escaped display names are safe
        in KubeSpawner's form template, which does not escape them.
        """
        site = self.site
        offered = self.runnable(site.environments if environments is None else environments)
        return profile_list(offered, site.profiles, self.groups(), site.pods)

    # ---- the choice ---------------------------------------------------------

    def options_from_form(self, formdata):
        """KubeSpawner's form (profile + profile option) or KioskHub's form fields."""
        return self._options_from_form(formdata) or kiosk_options_from_form(formdata)

    def options_from_query(self, query):
        return kiosk_options_from_form(query)

    async def load_user_options(self):
        """Refuse a choice the user may not make (400, with why), then apply the profile."""
        if not getattr(self, "_starting", False):
            await self.check_choice(self.user_options)
        await KubeSpawner.load_user_options(self)

    # ---- the steps of a start -------------------------------------------------

    async def prepare(self, spec: LaunchSpec, gpu_devices: str | None) -> None:
        try:
            environment_image(spec, self.site.pods, None)
        except ChoiceError as error:
            raise web.HTTPError(400, "%s", str(error)) from None

    async def launch(self, spec: LaunchSpec):
        started = KubeSpawner.start(self)
        try:
            self._url = await self._started_or_explained(started, spec)
        finally:
            if not started.done():
                started.cancel()
        yield {}

    async def _started_or_explained(self, started: asyncio.Future, spec: LaunchSpec) -> str:
        """KubeSpawner's start, unless the pod shows it cannot start (PodNotStarting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(self.start_timeout - 3, 2)
        profile = next((p.title for p in self.site.profiles if p.name == spec.profile),
                       spec.profile)
        while True:
            done, _ = await asyncio.wait({started}, timeout=WATCH_INTERVAL)
            pod = self._starting_pod()
            if done:
                try:
                    return started.result()
                except TimeoutError:
                    why = image_problem(pod, self.events) or scheduling_problem(pod, profile)
                    if why:
                        raise PodNotStarting(why) from None
                    raise
            why = image_problem(pod, self.events)
            if why is None and loop.time() > deadline:
                why = scheduling_problem(pod, profile)
            if why:
                raise PodNotStarting(why)

    def _starting_pod(self) -> dict | None:
        """The pod as KubeSpawner's reflector last saw it (None before it is watched)."""
        try:
            return self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}")
        except (AttributeError, KeyError):
            return None

    def server_address(self):
        return self._url

    async def poll_server(self) -> int | None:
        return await KubeSpawner.poll(self)

    async def stop_server(self, now: bool) -> None:
        await KubeSpawner.stop(self, now=now)

    async def tear_down(self) -> None:
        """Leave a pod that failed to start until JupyterHub's stop, which follows every
        failed start: its scheduler events (why it did not run) stay readable until then."""

    # ---- the manifests --------------------------------------------------------

    async def get_pod_manifest(self):
        spec = self.spec or await self.check_choice(self.user_options)
        return pod_model(
            spec,
            self.site.pods,
            PodTarget(
                pod_name=self.pod_name,
                home_claim=self.pvc_name,
                image=environment_image(spec, self.site.pods, None),
                command=(*(self.cmd or ["jupyterhub-singleuser"]), *self.get_args()),
                server_env=self.get_env(),
                labels=self._build_pod_labels(self._expand_all(self.extra_labels)),
            ),
        )

    def get_pvc_manifest(self):
        return home_claim_model(self.spec, self.site.pods, self.pvc_name)
