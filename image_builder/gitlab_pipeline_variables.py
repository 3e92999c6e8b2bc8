"""Pipeline variables for a GitLab CI build: validated from a registration, pure.

A registration names a GitLab project (``lab/physics/analysis`` or its URL), a ref (branch or
tag) and a subdirectory. ``pipeline_request`` checks all three and refuses anything that could
steer the pipeline somewhere else: a project outside the site's allowed namespaces or on
another host, a ref that git would refuse or that reads as an option (``-x``), a subdirectory
that climbs out of the repository, and any value with a newline or another control character.
The result, ``PipelineRequest``, turns into the ``variables`` list of GitLab's "create a
pipeline" call and the ``variables`` mapping of its trigger-token call, and nothing else: users
cannot pass variables of their own.

Nothing here does I/O; ``tests/unit/test_gitlab_pipeline_variables.py`` holds the table of
hostile inputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_REF_LENGTH = 255
MAX_SUBDIR_LENGTH = 255
MAX_VARIABLE_VALUE_LENGTH = 10_000
"""GitLab's limit on a CI/CD variable's value."""

VARIABLE_KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
PATH_SEGMENT_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")
"""One segment of a GitLab namespace or project path (GitLab's own rule, a little stricter:
no leading '.' or '-')."""
SUBDIR_SEGMENT_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
REF_FORBIDDEN_CHARACTERS = frozenset(" ~^:?*[\\")
REF_CHARACTERS = re.compile(r"^[A-Za-z0-9._/+@-]+$")
"""Besides git's rules: no '$' (GitLab expands $NAME in variable values), quotes or spaces."""
SSH_REMOTE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+@(?P<host>[^:/\s]+):(?P<path>[^\s]+)$")

SUBDIR_VARIABLE = "KIOSKHUB_SUBDIR"
REF_VARIABLE = "KIOSKHUB_REF"
BUILD_VARIABLE = "KIOSKHUB_BUILD"
"""Set to "1" in pipelines that KioskHub starts, so a project's own rules can tell them apart."""
BUILDER_VARIABLE = "KIOSKHUB_BUILDER"
"""Which builder the template's job uses (the site's ``gitlab.ci_builder``), when it names one."""
CI_BUILDERS = ("repo2docker", "kioskhub")


class PipelineInputError(ValueError):
    """A registration value that KioskHub refuses; ``field`` names which one."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PipelineRequest:
    """A checked request to build ``project_path`` at ``ref`` from ``subdir`` in GitLab CI."""

    project_path: str
    ref: str
    subdir: str = "."
    builder: str = ""
    """The site's ``gitlab.ci_builder``; empty: the project's own variables decide."""

    def variables(self) -> list[dict[str, str]]:
        """The ``variables`` of ``POST /projects/:id/pipeline``, in a fixed order."""
        return [
            {"key": key, "value": value, "variable_type": "env_var"}
            for key, value in self.variable_mapping().items()
        ]

    def variable_mapping(self) -> dict[str, str]:
        """The same variables as a mapping (the trigger-token API takes this shape)."""
        values = {BUILD_VARIABLE: "1", REF_VARIABLE: self.ref, SUBDIR_VARIABLE: self.subdir}
        if self.builder:
            if self.builder not in CI_BUILDERS:
                raise PipelineInputError("builder", f"must be one of {', '.join(CI_BUILDERS)}")
            values[BUILDER_VARIABLE] = self.builder
        for key, value in values.items():
            check_variable(key, value)
        return values


def pipeline_request(
    project: str,
    ref: str,
    subdir: str = "",
    *,
    gitlab_url: str,
    allowed_namespaces: tuple[str, ...] | list[str],
    builder: str = "",
) -> PipelineRequest:
    """Check a registration and return the request it makes; PipelineInputError otherwise."""
    project_path = project_path_from_reference(project, gitlab_url)
    check_namespace_allowed(project_path, allowed_namespaces)
    return PipelineRequest(project_path, check_ref(ref), check_subdir(subdir), builder)


def project_path_from_reference(reference: str, gitlab_url: str) -> str:
    """The project path (``group/sub/project``) named by a path, an https URL or an ssh remote.

    URLs must point at the configured GitLab (same scheme, host and port) and carry no
    credentials, query or fragment. ``.git`` and a trailing ``/-/...`` (a page of the project,
    like ``/-/tree/main``) are dropped.
    """
    _check_text("project", reference, MAX_VARIABLE_VALUE_LENGTH)
    text = reference.strip()
    if not text:
        raise PipelineInputError("project", "is empty; give a path like lab/analysis or its URL")
    base = urlsplit(gitlab_url)
    ssh = SSH_REMOTE_PATTERN.fullmatch(text)
    if ssh:
        if ssh["host"].lower() != (base.hostname or "").lower():
            raise PipelineInputError(
                "project", f"{ssh['host']!r} is not this site's GitLab ({base.hostname})"
            )
        path = ssh["path"]
    elif "://" in text:
        path = _path_from_url(text, base)
    else:
        path = text
    path = path.strip("/")
    path = path.split("/-/", 1)[0].removesuffix("/-")
    path = path.removesuffix(".git")
    return check_project_path(path)


def _path_from_url(text: str, base) -> str:
    try:
        url = urlsplit(text)
        port = url.port
    except ValueError as error:
        raise PipelineInputError("project", f"is not a valid URL ({error})") from None
    if url.username is not None or url.password is not None:
        raise PipelineInputError("project", "URLs with a user name or password are refused")
    if url.query or url.fragment:
        raise PipelineInputError("project", "URLs with a query (?) or fragment (#) are refused")
    same_site = (
        url.scheme.lower() == base.scheme.lower()
        and (url.hostname or "").lower() == (base.hostname or "").lower()
        and port == base.port
    )
    if not same_site:
        raise PipelineInputError(
            "project",
            f"{url.scheme}://{url.netloc} is not this site's GitLab "
            f"({base.scheme}://{base.netloc})",
        )
    prefix = base.path.rstrip("/")
    if prefix and not url.path.startswith(prefix + "/"):
        raise PipelineInputError("project", f"the URL is not below {prefix}/")
    return url.path[len(prefix) :]


def check_project_path(path: str) -> str:
    """``path`` when it is a GitLab project path with at least a namespace and a name."""
    segments = path.split("/")
    if len(segments) < 2:
        raise PipelineInputError(
            "project", f"{path!r} names no namespace; give group/project (e.g. lab/analysis)"
        )
    for segment in segments:
        if not PATH_SEGMENT_PATTERN.fullmatch(segment) or segment.endswith((".git", ".atom")):
            raise PipelineInputError(
                "project",
                f"{path!r} is not a GitLab project path: each part uses letters, digits, "
                "'_', '.' or '-' and starts with a letter, digit or '_'",
            )
    return path


def check_namespace_allowed(project_path: str, allowed_namespaces) -> str:
    """``project_path`` when it lies in one of ``allowed_namespaces`` (or their subgroups).

    Namespaces compare whole segments and ignore case, as GitLab does: ``lab`` allows
    ``lab/x`` and ``lab/sub/x`` but not ``lab2/x``.
    """
    namespace = project_path.lower().split("/")[:-1]
    for allowed in allowed_namespaces:
        allowed_segments = allowed.strip("/").lower().split("/")
        if namespace[: len(allowed_segments)] == allowed_segments:
            return project_path
    listed = ", ".join(allowed_namespaces) if allowed_namespaces else "none are configured"
    raise PipelineInputError(
        "project",
        f"{project_path!r} is outside the GitLab namespaces this site builds from ({listed}); "
        "ask the site admin to add its group to gitlab.allowed_namespaces",
    )


def check_ref(ref: str) -> str:
    """``ref`` when it is a branch or tag name that git accepts (``git check-ref-format``).

    Also refused: a leading '-' (it would read as an option), characters other than ASCII
    letters, digits and ``. _ / + @ -`` (GitLab expands ``$NAME`` in variable values, and
    quotes or spaces have no business in a ref), and anything longer than 255 characters.
    """
    _check_text("ref", ref, MAX_REF_LENGTH)
    problem = _ref_problem(ref)
    if problem:
        raise PipelineInputError("ref", f"{ref!r} is not a valid branch or tag name: {problem}")
    return ref


def _ref_problem(ref: str) -> str | None:
    if not ref:
        return "it is empty"
    if ref.startswith("-"):
        return "it starts with '-'"
    if ref == "@":
        return "it is '@'"
    bad = sorted(REF_FORBIDDEN_CHARACTERS.intersection(ref))
    if bad:
        return "it contains " + " ".join(repr(c) for c in bad)
    if ".." in ref or "@{" in ref:
        return "it contains '..' or '@{'"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref:
        return "it starts or ends with '/', or has '//'"
    if ref.endswith("."):
        return "it ends with '.'"
    if not REF_CHARACTERS.fullmatch(ref):
        return "use only letters, digits and . _ / + @ -"
    for component in ref.split("/"):
        if component.startswith(".") or component.endswith(".lock"):
            return "a part starts with '.' or ends with '.lock'"
    return None


def check_subdir(subdir: str) -> str:
    """A relative folder inside the repository, normalised; ``"."`` for the root."""
    _check_text("subdir", subdir, MAX_SUBDIR_LENGTH)
    text = subdir.strip()
    if text.startswith("/"):
        raise PipelineInputError(
            "subdir", f"{subdir!r} is absolute; give a folder in the repository"
        )
    segments = [segment for segment in text.split("/") if segment not in ("", ".")]
    for segment in segments:
        if segment == ".." or not SUBDIR_SEGMENT_PATTERN.fullmatch(segment):
            raise PipelineInputError(
                "subdir",
                f"{subdir!r} is not a folder inside the repository: use names of letters, "
                "digits, '_', '.' or '-' (no '..', no leading '-')",
            )
    return "/".join(segments) or "."


def check_variable(key: str, value: str) -> None:
    """Refuse a CI variable whose key GitLab would reject or whose value is not one clean line."""
    if not isinstance(key, str) or not VARIABLE_KEY_PATTERN.fullmatch(key):
        raise PipelineInputError("variables", f"{key!r} is not a valid CI variable name")
    _check_text(f"variables.{key}", value, MAX_VARIABLE_VALUE_LENGTH)


def _check_text(field: str, value: str, max_length: int) -> None:
    if not isinstance(value, str):
        raise PipelineInputError(field, f"expected text, got {type(value).__name__}")
    if len(value) > max_length:
        raise PipelineInputError(field, f"is longer than {max_length} characters")
    if not value.isprintable():
        raise PipelineInputError(
            field, "contains a newline or another control character, which is refused"
        )
