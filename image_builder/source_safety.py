"""What a user may ask the builder to fetch: repository URLs, refs and subfolders. Pure.

Every check returns a clean value or raises UnsafeSource with a message for the user. The
git commands that use these values are argv lists (never a shell string), put ``--`` before
user input, and allow only the configured protocols (``-c protocol.allow=never`` plus one
``protocol.<name>.allow=always`` each, and ``GIT_ALLOW_PROTOCOL``). BinderHub's
CVE-2021-39159 (a ref that became a git option) is the example this guards against.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
MAX_REF_LENGTH = 255
MAX_SUBDIR_LENGTH = 1024
REF_CHARACTERS = re.compile(r"^[A-Za-z0-9._/+-]+$")
SHA_PATTERN = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
CONTROL = re.compile(r"[\x00-\x20\x7f]")


class UnsafeSource(ValueError):
    """A repository URL, ref or subfolder that the builder refuses; the message says why."""


@dataclass(frozen=True)
class RepositorySource:
    """A repository that passed the checks: what the user gave and what git fetches."""

    url: str
    fetch_url: str
    protocol: str
    local_path: str | None = None


def check_repository_url(
    url: str,
    *,
    allowed_schemes: Iterable[str],
    allowed_hosts: Iterable[str],
    allow_local_paths: bool = False,
) -> RepositorySource:
    """``url`` as a RepositorySource, if the site's rules allow it; else UnsafeSource."""
    if not isinstance(url, str) or not url:
        raise UnsafeSource("give a repository URL such as https://gitlab.com/group/project.git")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeSource(f"the repository URL is longer than {MAX_URL_LENGTH} characters")
    if url.startswith("-"):
        raise UnsafeSource(f"{url!r} looks like a command-line option, not a repository URL")
    if CONTROL.search(url):
        raise UnsafeSource("the repository URL contains spaces or control characters")
    if url.startswith("/"):
        return _local_path(url, allow_local_paths)
    if "::" in url.split("/", 1)[0] or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*::", url):
        raise UnsafeSource(f"git transport helpers ({url.split('::')[0]}::) are not allowed")
    if "://" not in url:
        if re.match(r"^[^/]+@[^/]+:", url) or re.match(r"^[^/:]+:", url):
            raise UnsafeSource(
                f"{url!r} is scp-style; write it as ssh://user@host/path (if the site allows ssh)"
            )
        raise UnsafeSource(
            f"{url!r} is not a URL; write https://host/group/project.git"
            + (" or an absolute path" if allow_local_paths else "")
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    schemes = tuple(allowed_schemes)
    if scheme == "file":
        raise UnsafeSource(
            "file:// URLs are not allowed"
            + ("; give the repository's absolute path instead" if allow_local_paths else "")
        )
    if scheme not in schemes:
        raise UnsafeSource(
            f"the scheme {scheme!r} is not allowed; this site allows: {', '.join(schemes)}"
        )
    netloc = parts.netloc
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        if ":" in userinfo or scheme != "ssh":
            raise UnsafeSource("do not put user names, passwords or tokens in the repository URL")
    try:
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as error:
        raise UnsafeSource(f"the repository URL has a bad host or port: {error}") from None
    if not host:
        raise UnsafeSource("the repository URL names no host")
    if host.startswith("-") or _is_ip_address(host):
        raise UnsafeSource(f"the host {host!r} is not allowed; name the host, not an address")
    if not HOST_NAME.fullmatch(host):
        raise UnsafeSource(f"{host!r} is not a valid host name")
    hosts = tuple(allowed_hosts)
    if not host_allowed(host, hosts):
        raise UnsafeSource(
            f"the host {host!r} is not allowed; this site allows: {', '.join(hosts) or 'none'}"
        )
    path = parts.path
    if not path.strip("/") or any(seg in ("..", ".") for seg in path.split("/")):
        raise UnsafeSource("the repository URL needs a path like /group/project.git")
    if path.lstrip("/").startswith("-"):
        raise UnsafeSource("the repository path may not start with '-'")
    if parts.query or parts.fragment:
        raise UnsafeSource("the repository URL may not have a query (?) or fragment (#)")
    return RepositorySource(url=url, fetch_url=url, protocol=scheme)


def _local_path(path: str, allow_local_paths: bool) -> RepositorySource:
    if not allow_local_paths:
        raise UnsafeSource("local paths are not allowed on this site; give a git URL")
    clean = posixpath.normpath(path)
    if any(seg in ("..",) for seg in path.split("/")):
        raise UnsafeSource("the path may not contain '..'")
    if clean == "/":
        raise UnsafeSource("the path '/' is not a repository")
    return RepositorySource(
        url=clean, fetch_url=f"file://{clean}", protocol="file", local_path=clean
    )


def _is_ip_address(host: str) -> bool:
    candidate = host.strip("[]")
    try:
        ipaddress.ip_address(candidate)
        return True
    except ValueError:
        pass
    # Forms git and libc accept as addresses: 2852039166, 0xa9fea9fe, 0251.0376.0251.0376.
    return bool(re.fullmatch(r"(0x[0-9a-f]+|\d+)(\.(0x[0-9a-f]+|\d+)){0,3}", candidate))


def host_allowed(host: str, allowed_hosts: Iterable[str]) -> bool:
    """Exact names, or '*.example.org' for every subdomain of example.org."""
    host = host.lower().rstrip(".")
    for allowed in allowed_hosts:
        allowed = allowed.lower()
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]) and host != allowed[2:]:
                return True
        elif host == allowed:
            return True
    return False


def check_ref(ref: str | None) -> str:
    """A branch, tag or commit SHA by git's check-ref-format rules, stricter; 'HEAD' if empty."""
    if ref is None or ref == "":
        return "HEAD"
    if not isinstance(ref, str):
        raise UnsafeSource(f"the ref must be a string, got {ref!r}")
    if len(ref) > MAX_REF_LENGTH:
        raise UnsafeSource(f"the ref is longer than {MAX_REF_LENGTH} characters")
    if SHA_PATTERN.fullmatch(ref):
        return ref
    if ref.startswith("-"):
        raise UnsafeSource(f"the ref {ref!r} may not start with '-'")
    if not REF_CHARACTERS.fullmatch(ref):
        raise UnsafeSource(
            f"the ref {ref!r} has characters that refs may not use here; use letters, digits "
            "and . _ / + -"
        )
    problems = (
        (".." in ref, "'..'"),
        ("//" in ref, "'//'"),
        (ref.startswith("/") or ref.endswith("/"), "a leading or trailing '/'"),
        (ref.endswith("."), "a trailing '.'"),
        (any(part.startswith(".") for part in ref.split("/")), "a part starting with '.'"),
        (any(part.endswith(".lock") for part in ref.split("/")), "a part ending in '.lock'"),
    )
    for bad, what in problems:
        if bad:
            raise UnsafeSource(f"the ref {ref!r} is not a valid git ref: it has {what}")
    return ref


def check_subdir(subdir: str | None) -> str:
    """A relative folder inside the repository ('' for its top), without '..'."""
    if subdir is None:
        return ""
    if not isinstance(subdir, str):
        raise UnsafeSource(f"the subfolder must be a string, got {subdir!r}")
    if len(subdir) > MAX_SUBDIR_LENGTH or CONTROL.search(subdir.replace(" ", "_")):
        raise UnsafeSource("the subfolder is too long or contains control characters")
    if subdir.startswith("/"):
        raise UnsafeSource(f"the subfolder {subdir!r} must be relative to the repository")
    parts = [part for part in subdir.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise UnsafeSource(f"the subfolder {subdir!r} may not contain '..'")
    if any(part.startswith("-") for part in parts):
        raise UnsafeSource(f"the subfolder {subdir!r} may not have parts starting with '-'")
    return "/".join(parts)


def git_argv(protocols: Iterable[str], *args: str) -> list[str]:
    """``git`` with only ``protocols`` allowed, then ``args`` (user input after a ``--``)."""
    argv = ["git", "-c", "protocol.allow=never"]
    for protocol in sorted(set(protocols)):
        argv += ["-c", f"protocol.{protocol}.allow=always"]
    argv += [
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.symlinks=true",
        "-c",
        "advice.detachedHead=false",
    ]
    return argv + list(args)


def git_environment(protocols: Iterable[str], home: str) -> dict[str, str]:
    """The environment git runs in: no user config, no prompts, only ``protocols``."""
    return {
        "GIT_ALLOW_PROTOCOL": ":".join(sorted(set(protocols))),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        "HOME": home,
    }
