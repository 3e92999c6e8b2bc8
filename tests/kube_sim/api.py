"""The simulated API server's HTTP handlers: the core/v1 paths KubeSpawner uses.

- ``/api/v1/namespaces/{ns}/{pods|persistentvolumeclaims|events}``: GET lists (``PodList``
  with ``metadata.resourceVersion``; items without kind/apiVersion, as the API server sends
  them), ``?watch=true`` streams newline-delimited watch events, POST creates (201).
- ``/api/v1/namespaces/{ns}/{plural}/{name}``: GET, DELETE (200 with the object; a pod
  is deleted gracefully and disappears after its grace period).
- ``/api/v1/{plural}``: lists and watches across namespaces; ``/api/v1/namespaces/{ns}``.
- Every request needs the bearer token from the kubeconfig (401 otherwise); errors are the
  API server's ``Status`` bodies (404 NotFound, 409 AlreadyExists, 422 Invalid, 410 Expired
  inside a watch, 405 MethodNotAllowed).
- Created objects are validated with kubernetes-validate: type errors are 422 Invalid; unknown
  fields are dropped with a ``Warning`` header, as fieldValidation=Warn does. A pod that
  Pod Security admission refuses (``admission``) is 403 Forbidden.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time

import kubernetes_validate
from tornado.iostream import StreamClosedError
from tornado.web import RequestHandler

from . import admission
from .model import KINDS, ApiError, ClusterModel, not_found, status_body
from .scheduling import qos_class
from .selectors import field_matcher, label_matcher

KUBERNETES_VERSION = "1.33.0"
NAME_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
PLURALS = "|".join(KINDS)


class KubeHandler(RequestHandler):
    """Base: the bearer token, JSON answers and Status error bodies."""

    def initialize(self, simulation) -> None:
        self.simulation = simulation
        self.model: ClusterModel = simulation.model

    def check_xsrf_cookie(self) -> None:
        """The API authenticates with bearer tokens."""

    def prepare(self) -> None:
        self.simulation.requests.append(
            (self.request.method, self.request.path, self.request.query)
        )
        if self.request.headers.get("Authorization") != f"Bearer {self.simulation.token}":
            self.send_status(status_body(401, "Unauthorized", "Unauthorized"))
            self.finish()

    def send_json(self, body: dict, code: int = 200) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def send_status(self, body: dict) -> None:
        self.set_status(body["code"])
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(body))

    def write_error(self, status_code: int, **kwargs) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, ApiError):
            self.send_status(error.body)
        elif status_code == 405:
            self.send_status(status_body(405, "MethodNotAllowed",
                                         "the server does not allow this method on the "
                                         "requested resource"))
        else:
            self.send_status(status_body(status_code, "InternalError", "internal error"))

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ApiError):
            if not self._finished:
                self.send_status(e.body)
                self.finish()
            return
        super()._handle_request_exception(e)

    def body(self) -> dict:
        try:
            return json.loads(self.request.body or b"{}")
        except json.JSONDecodeError as error:
            raise ApiError(400, "BadRequest", f"the body of the request was in an unknown "
                           f"format: {error}") from None

    def check_namespace(self, namespace: str) -> None:
        if namespace not in self.model.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found',
                           {"name": namespace, "kind": "namespaces"})


def list_item(obj: dict) -> dict:
    item = copy.deepcopy(obj)
    item.pop("kind", None)
    item.pop("apiVersion", None)
    return item


class CollectionHandler(KubeHandler):
    """List, watch and create objects of one kind (in one namespace, or in all)."""

    async def get(self, namespace: str | None, plural: str) -> None:
        namespace = namespace or None
        if namespace is not None:
            self.check_namespace(namespace)
        labels = label_matcher(self.get_query_argument("labelSelector", None))
        fields = field_matcher(self.get_query_argument("fieldSelector", None))

        def matches(obj: dict) -> bool:
            return labels(obj) and fields(obj)

        if self.get_query_argument("watch", "false").lower() in ("true", "1"):
            await self.watch(namespace, plural, matches)
            return
        _, list_kind = KINDS[plural]
        self.send_json(
            {
                "kind": list_kind,
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.model.resource_version)},
                "items": [list_item(o) for o in self.model.list(plural, namespace, matches)],
            }
        )

    async def watch(self, namespace: str | None, plural: str, matches) -> None:
        timeout = float(self.get_query_argument("timeoutSeconds", "1800"))
        since = self.get_query_argument("resourceVersion", None)
        self.set_header("Content-Type", "application/json")
        try:
            watcher = self.model.subscribe(plural, namespace, matches, since)
        except ApiError as error:
            self.write(json.dumps({"type": "ERROR", "object": error.body}) + "\n")
            self.finish()
            return
        deadline = time.monotonic() + timeout
        try:
            await self.flush()
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                self.write(json.dumps({"type": event.type, "object": event.object}) + "\n")
                await self.flush()
            self.finish()
        except StreamClosedError:
            pass
        finally:
            self.model.unsubscribe(watcher)

    def post(self, namespace: str | None, plural: str) -> None:
        if not namespace:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method "
                           "on the requested resource")
        self.check_namespace(namespace)
        body = self.body()
        kind, _ = KINDS[plural]
        if body.get("kind") not in (None, kind):
            raise ApiError(400, "BadRequest", f"the API version in the data (v1) does not "
                           f"match the expected kind ({body.get('kind')} is not {kind})")
        body = self.validated(kind, plural, {**body, "kind": kind, "apiVersion": "v1"})
        if plural == "pods":
            if found := admission.violations(body):
                name = body.get("metadata", {}).get("name", "")
                raise ApiError(403, "Forbidden", admission.forbidden_message(name, found),
                               {"name": name, "kind": plural})
            body["status"] = {"phase": "Pending", "qosClass": qos_class(body)}
        self.send_json(self.model.create(plural, namespace, body), 201)

    def validated(self, kind: str, plural: str, body: dict) -> dict:
        name = body.get("metadata", {}).get("name", "")
        if name and (len(name) > 253 or not re.fullmatch(NAME_PATTERN, name)):
            raise ApiError(
                422, "Invalid",
                f'{kind} "{name}" is invalid: metadata.name: Invalid value: "{name}": a '
                "lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.'",
                {"name": name, "kind": plural,
                 "causes": [{"reason": "FieldValueInvalid", "field": "metadata.name"}]},
            )
        try:
            kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=False)
        except kubernetes_validate.ValidationError as error:
            field = ".".join(str(p) for p in error.path)
            raise ApiError(
                422, "Invalid", f'{kind} "{name}" is invalid: {field}: {error.message}',
                {"name": name, "kind": plural,
                 "causes": [{"reason": "FieldValueInvalid", "message": error.message,
                             "field": field}]},
            ) from None
        try:
            kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            self.add_header("Warning", f'299 - "unknown field: {error.message}"')
            self.simulation.warnings.append(error.message)
        return body


class ObjectHandler(KubeHandler):
    """Read and delete one object."""

    def get(self, namespace: str, plural: str, name: str) -> None:
        self.check_namespace(namespace)
        self.send_json(self.model.get(plural, namespace, name))

    def delete(self, namespace: str, plural: str, name: str) -> None:
        self.check_namespace(namespace)
        obj = self.model.find(plural, namespace, name)
        if obj is None:
            raise not_found(plural, name)
        if plural == "pods":
            grace = self.get_query_argument("gracePeriodSeconds", None)
            if grace is None:
                grace = self.body().get("gracePeriodSeconds")
            if grace is None:
                grace = obj["spec"].get("terminationGracePeriodSeconds", 30)
            self.send_json(self.simulation.kubelet.delete_pod(obj, int(grace)))
            return
        self.model.remove(plural, obj)
        self.send_json(obj)


class NamespaceHandler(KubeHandler):
    def get(self, name: str) -> None:
        self.check_namespace(name)
        self.send_json({"kind": "Namespace", "apiVersion": "v1",
                        "metadata": {"name": name}, "status": {"phase": "Active"}})


class VersionHandler(KubeHandler):
    def get(self) -> None:
        major, minor, _ = KUBERNETES_VERSION.split(".")
        self.send_json({"major": major, "minor": minor,
                        "gitVersion": f"v{KUBERNETES_VERSION}", "platform": "linux/amd64"})


class NotFoundHandler(KubeHandler):
    def prepare(self) -> None:
        super().prepare()
        if not self._finished:
            self.send_status(status_body(404, "NotFound",
                                         "the server could not find the requested resource",
                                         {}))
            self.finish()


ROUTES = [
    (r"/version", VersionHandler),
    (rf"/api/v1/namespaces/([^/]+)/({PLURALS})", CollectionHandler),
    (rf"/api/v1/namespaces/([^/]+)/({PLURALS})/([^/]+)", ObjectHandler),
    (r"/api/v1/namespaces/([^/]+)", NamespaceHandler),
    (rf"/api/v1/()({PLURALS})", CollectionHandler),
]
