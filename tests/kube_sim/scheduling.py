"""Where a pod may run: the simulated nodes and kube-scheduler's filters. Pure.

A node fits a pod whose ``nodeSelector`` its labels match, whose taints the pod tolerates and
whose free GPUs cover the pod's ``nvidia.com/gpu`` limits; otherwise the pod stays Pending
and ``place`` gives the reason as kube-scheduler words it ("0/2 nodes are available: ...").
"""

from __future__ import annotations

from dataclasses import dataclass, field

GPU_RESOURCE = "nvidia.com/gpu"


@dataclass
class SimNode:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    gpus: int = 0
    ip: str = "192.168.49.2"


DEFAULT_NODES = (
    SimNode("sim-cpu-1", {"kubernetes.io/hostname": "sim-cpu-1"}, ip="192.168.49.2"),
    SimNode(
        "sim-gpu-1",
        {"kubernetes.io/hostname": "sim-gpu-1",
         "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        taints=[{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}],
        gpus=4,
        ip="192.168.49.3",
    ),
)


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    for toleration in tolerations or []:
        operator = toleration.get("operator", "Equal")
        key_ok = toleration.get("key") in (None, "", taint["key"]) if operator == "Exists" \
            else toleration.get("key") == taint["key"]
        value_ok = operator == "Exists" or toleration.get("value") == taint.get("value")
        effect_ok = toleration.get("effect") in (None, "", taint["effect"])
        if key_ok and value_ok and effect_ok:
            return True
    return False


def gpus_of(pod: dict) -> int:
    return sum(
        int((c.get("resources") or {}).get("limits", {}).get(GPU_RESOURCE, 0))
        for c in pod["spec"]["containers"]
    )


def qos_class(pod: dict) -> str:
    resources = [c.get("resources") or {} for c in pod["spec"]["containers"]]
    if all(r.get("limits") and r.get("requests") and
           {k: v for k, v in r["limits"].items() if k in ("cpu", "memory")}
           == {k: v for k, v in r["requests"].items() if k in ("cpu", "memory")}
           for r in resources):
        return "Guaranteed"
    return "Burstable" if any(r.get("limits") or r.get("requests") for r in resources) \
        else "BestEffort"


def place(pod: dict, nodes: list[SimNode], gpus_used) -> tuple[SimNode | None, str]:
    """The first node that fits ``pod``, or None and kube-scheduler's reason.

    ``gpus_used(node)``: the GPUs that pods bound to ``node`` hold.
    """
    selector = pod["spec"].get("nodeSelector") or {}
    tolerations = pod["spec"].get("tolerations") or []
    wanted_gpus = gpus_of(pod)
    refusals: dict[str, int] = {}
    for node in nodes:
        if any(node.labels.get(k) != v for k, v in selector.items()):
            why = "node(s) didn't match Pod's node affinity/selector"
        elif untolerated := [t for t in node.taints if t["effect"] in
                             ("NoSchedule", "NoExecute") and not tolerates(tolerations, t)]:
            taint = untolerated[0]
            why = f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
        elif wanted_gpus > node.gpus - gpus_used(node):
            why = f"Insufficient {GPU_RESOURCE}"
        else:
            return node, ""
        refusals[why] = refusals.get(why, 0) + 1
    reasons = ", ".join(f"{count} {why}" for why, count in sorted(refusals.items()))
    return None, f"0/{len(nodes)} nodes are available: {reasons}."
