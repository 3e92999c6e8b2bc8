"""KioskKubeSpawner: user servers as pods in a Kubernetes cluster, through KubeSpawner.

KubeSpawner does the talking to the cluster (create the claim and the pod, watch pods and
events, report progress, delete, keep its versioned state for restarts). KioskHub supplies
what to run from the same site config as every other backend:

- ``profile_list`` is generated from the site's profiles and environments
  (``kube_profiles``), filtered by the user's groups, so the spawn form and KubeSpawner's
  own traits match the model; launch links and the REST API take the same
  ``{"environment", "profile"}`` options;
- the Pod and the home claim are KioskHub's shared manifests (``pod_manifest``), the very
  ones ``podman kube play`` runs on one machine.

The cluster is reached as kubernetes_asyncio finds it: in-cluster service account, or the
kubeconfig named by ``KUBECONFIG`` (else ``~/.kube/config``) when the hub starts.
"""

from __future__ import annotations

from kubespawner import KubeSpawner
from tornado import web
from traitlets import default

from .dask_clusters import stop_user_clusters
from .kube_profiles import profile_list
from .launch_spec import ChoiceError
from .pod_choice import PodChoice
from .pod_manifest import PodTarget, environment_image, home_claim_model, pod_model
from .spawn_form import options_from_form as kiosk_options_from_form


class KioskKubeSpawner(PodChoice, KubeSpawner):
    """KubeSpawner that launches KioskHub's LaunchSpec as KioskHub's Pod manifest."""

    @default("profile_list")
    def _default_profile_list(self):
        return lambda spawner: spawner.site_profile_list()

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return self.refuse_bad_choice

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    def site_profile_list(self) -> list[dict]:
        """The profile_list for this spawner's user (their groups decide what is offered)."""
        site = self.user_site()
        return profile_list(site.environments, site.profiles, self._groups(), site.pods)

    # ---- the choice ---------------------------------------------------------

    def options_from_form(self, formdata):
        """KubeSpawner's form (profile + profile option) or KioskHub's form fields."""
        options = self._options_from_form(formdata) or kiosk_options_from_form(formdata)
        self.check_choice(options)
        return options

    def options_from_query(self, query):
        return self.choice_from_form(query)

    async def load_user_options(self):
        """Refuse a choice the user may not make (400, with why), then apply the profile."""
        self.check_choice(self.user_options)
        await super().load_user_options()

    # ---- the manifests --------------------------------------------------------

    async def get_pod_manifest(self):
        spec = self.check_choice(self.user_options)
        try:
            image = environment_image(spec, self.site.pods, None)
        except ChoiceError as error:
            raise web.HTTPError(400, "%s", str(error)) from None
        return pod_model(
            spec,
            self.site.pods,
            PodTarget(
                pod_name=self.pod_name,
                home_claim=self.pvc_name,
                image=image,
                command=(*(self.cmd or ["jupyterhub-singleuser"]), *self.get_args()),
                server_env=self.get_env(),
                labels=self._build_pod_labels(self._expand_all(self.extra_labels)),
            ),
        )

    def get_pvc_manifest(self):
        spec = self.check_choice(self.user_options)
        return home_claim_model(spec, self.site.pods, self.pvc_name)

    async def stop(self, now=False):
        await stop_user_clusters(self.site, self.api_token, self._log_name)
        await super().stop(now=now)
