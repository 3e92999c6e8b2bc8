"""What the Kubernetes simulation's node hands podman for a stored pod: a literal document."""

from __future__ import annotations

from tests.kube_sim.node_pod import node_pod, unmountable_volumes

STORED = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "jupyter-ada", "namespace": "lab", "uid": "u-1",
                 "labels": {"component": "singleuser-server"},
                 "annotations": {"kioskhub/username": "ada"}},
    "spec": {
        "nodeName": "sim-cpu-1",
        "restartPolicy": "Never",
        "containers": [{"name": "notebook", "image": "localhost/kioskhub-base:1",
                        "ports": [{"name": "notebook-port", "containerPort": 8888}]}],
        "volumes": [
            {"name": "home", "persistentVolumeClaim": {"claimName": "claim-ada"}},
            {"name": "data-data", "hostPath": {"path": "/srv/data", "type": "Directory"}},
        ],
    },
    "status": {"phase": "Pending"},
}


def test_the_pod_is_renamed_labelled_published_on_its_address_and_mounts_its_claim():
    assert node_pod(STORED, "c1234", "127.244.0.7") == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "ksim-c1234-lab-jupyter-ada",
            "labels": {"component": "singleuser-server", "kube-sim/cluster": "c1234"},
            "annotations": {"kioskhub/username": "ada"},
        },
        "spec": {
            "hostname": "jupyter-ada",
            "restartPolicy": "Never",
            "containers": [{"name": "notebook", "image": "localhost/kioskhub-base:1",
                            "ports": [{"name": "notebook-port", "containerPort": 8888,
                                       "hostIP": "127.244.0.7", "hostPort": 8888}]}],
            "volumes": [
                {"name": "home",
                 "persistentVolumeClaim": {"claimName": "ksim-c1234-lab-claim-ada"}},
                {"name": "data-data", "hostPath": {"path": "/srv/data", "type": "Directory"}},
            ],
        },
    }
    assert STORED["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "claim-ada"


def test_volumes_the_node_cannot_mount_are_named():
    pod = {"spec": {"volumes": [
        {"name": "home", "persistentVolumeClaim": {"claimName": "c"}},
        {"name": "data-data", "nfs": {"server": "nfs.lab.org", "path": "/export"}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "archive", "csi": {"driver": "cephfs.csi.ceph.com"}},
    ]}}

    assert unmountable_volumes(pod) == [("data-data", "nfs"), ("archive", "csi")]
