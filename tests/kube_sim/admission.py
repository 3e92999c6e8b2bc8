"""Pod Security admission, as a namespace labelled ``pod-security.kubernetes.io/enforce`` does.

The simulation's kubelet runs pods with root's podman, so the pods it admits may not ask for
what would reach the machine itself: privileged containers, added capabilities, or the
host's network, process or IPC namespaces are refused with the API server's 403 and its
words ("violates PodSecurity ..."). hostPath volumes stay allowed: data mounts use them, and
only the hub, holding the cluster's token, creates pods. Pure.
"""

from __future__ import annotations

from typing import Any

LEVEL = "baseline:latest"
HOST_NAMESPACES = ("hostNetwork", "hostPID", "hostIPC")


def violations(pod: dict[str, Any]) -> list[str]:
    """What in ``pod`` the baseline Pod Security Standard forbids, in the API's words."""
    spec = pod.get("spec") or {}
    found = []
    host = [f"{key}=true" for key in HOST_NAMESPACES if spec.get(key)]
    if host:
        found.append(f"host namespaces ({', '.join(host)})")
    containers = list(spec.get("initContainers") or []) + list(spec.get("containers") or [])
    privileged = [c["name"] for c in containers
                  if (c.get("securityContext") or {}).get("privileged")]
    if privileged:
        names = ", ".join(f'"{name}"' for name in privileged)
        found.append(f"privileged (container {names} must not set "
                     "securityContext.privileged=true)")
    added = sorted({cap for c in containers
                    for cap in ((c.get("securityContext") or {}).get("capabilities") or {})
                    .get("add") or []})
    if added:
        found.append(f"non-default capabilities (containers must not include "
                     f"{', '.join(added)} in securityContext.capabilities.add)")
    return found


def forbidden_message(name: str, found: list[str]) -> str:
    return f'pods "{name}" is forbidden: violates PodSecurity "{LEVEL}": {", ".join(found)}'
