"""Which environments a backend can run, by kind; a backend lists its kinds in
``SpawnBackend.runnable_kinds`` and the refusals below tell the user why not."""

from __future__ import annotations

from kioskhub.hub.schema.choices import Environment


def environment_kind(environment: Environment) -> str:
    """'venv', 'own' (KioskHub's own environment), 'image' or 'repository' (not built)."""
    if environment.kind == "venv" and environment.path is None:
        return "own"
    return environment.kind


REFUSALS = {
    "repository": "The environment {name!r} has not been built yet. Build it first.",
    "image": "The environment {name!r} is a container image; the {backend} backend runs "
    "venv environments. Choose another environment.",
    "venv": "The environment {name!r} is a venv on the hub's machine, which a pod cannot "
    "use; choose an image environment.",
    "own": "KioskHub's own environment {name!r} does not run on the {backend} backend; "
    "choose another environment.",
}
