"""Which environments each backend runs, by kind, and what a user is told where one cannot.

``BACKEND_KINDS`` is the one table: a backend's ``SpawnBackend.runnable_kinds`` is its row
(a unit test holds every backend class to it). ``refusal`` names the environment, why this
backend cannot run it, and the backends that can, so the spawn form shows it as an option
that cannot be chosen, with this text, and a launch link or API call that names it is
refused with the same text before anything starts.
"""

from __future__ import annotations

from kioskhub.hub.schema.choices import Environment

BACKEND_KINDS = {
    "local": frozenset({"venv", "own"}),
    "podman": frozenset({"image", "own"}),
    "kubernetes": frozenset({"image", "own"}),
    "openstack": frozenset({"image", "own"}),
}
"""venv: a venv on the hub's machine; own: KioskHub's own environment (in pods, the site
image); image: a container image. Unbuilt repositories run nowhere. A local server cannot
run an image: the site runs image environments with the podman backend."""


def environment_kind(environment: Environment) -> str:
    """'venv', 'own' (KioskHub's own environment), 'image' or 'repository' (not built)."""
    if environment.kind == "venv" and environment.path is None:
        return "own"
    return environment.kind


WHY_NOT = {
    "image": "is a container image, which the {backend} backend cannot run",
    "venv": "is a venv on the hub's machine, which the {backend} backend cannot use (a pod "
    "has only its image)",
    "own": "is KioskHub's own environment, which the {backend} backend does not run",
}


def backends_running(kind: str) -> list[str]:
    """The backends whose servers can run environments of ``kind``, in a fixed order."""
    return [name for name, kinds in BACKEND_KINDS.items() if kind in kinds]


def refusal(environment: Environment, backend: str) -> str:
    """Why ``backend`` cannot run ``environment``, and what the user can do."""
    kind = environment_kind(environment)
    name = environment.name
    if kind == "repository":
        return f"The environment {name!r} has not been built yet. Build it first."
    runners = backends_running(kind)
    where = " or ".join([", ".join(runners[:-1]), runners[-1]] if len(runners) > 2 else runners)
    return (
        f"The environment {name!r} {WHY_NOT[kind].format(backend=backend)}; it runs on "
        f"sites whose spawner.backend is {where}. Choose another environment."
    )
