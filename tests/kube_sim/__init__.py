"""A simulation of the Kubernetes API server (core/v1 pods, claims, events, watch).

Speaks HTTP with the API server's paths, status codes, ``Status`` error bodies and watch
streams, and plays scheduler, kubelet and volume provisioner, so that KubeSpawner (through
kubernetes_asyncio) runs its real start/poll/stop against it. Its kubelet runs each pod with
podman. See ``server.py``.
"""

from .server import HOST_LOOPBACK, KubernetesSimulation

__all__ = ["HOST_LOOPBACK", "KubernetesSimulation"]
