"""The VM's cloud-init user-data: literal documents, validated by cloud-init's own schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from kioskhub.spawner.openstack_cloud_init import (
    FAILURE_MARKER,
    UserDataError,
    VmServer,
    env_file,
    render_user_data,
    user_data_document,
)

SCHEMA = Path(__file__).parents[1] / "resources" / "cloud_init" / "schema-cloud-config-v1.json"
VOLUME = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ENV = {
    "JUPYTERHUB_API_TOKEN": "secret-token",
    "JUPYTERHUB_API_URL": "http://10.0.2.2:8081/hub/api",
    "JUPYTERHUB_OAUTH_SCOPES": '["access:servers!server=ada/"]',
}


def valid(text: str) -> dict:
    """The document ``text`` holds, after cloud-init's schema accepted it."""
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft4Validator(schema).validate(document)
    return document


def server(**changes) -> VmServer:
    values = dict(server_env=ENV, args=("--debug",), home_volume_id=VOLUME)
    return VmServer(**{**values, **changes})


def test_a_glance_image_runs_the_server_itself_with_the_env_file_closed_to_others():
    document = valid(render_user_data(server()))
    assert document == {
        "hostname": "kioskhub-server",
        "write_files": [
            {
                "path": "/etc/kioskhub/server.env",
                "owner": "root:root",
                "permissions": "0600",
                "content": 'JUPYTERHUB_API_TOKEN="secret-token"\n'
                'JUPYTERHUB_API_URL="http://10.0.2.2:8081/hub/api"\n'
                'JUPYTERHUB_OAUTH_SCOPES="[\\"access:servers!server=ada/\\"]"\n',
            },
            {
                "path": "/etc/systemd/system/kioskhub-server.service",
                "owner": "root:root",
                "permissions": "0644",
                "content": "[Unit]\n"
                "Description=KioskHub user server\n"
                "After=network-online.target home.mount\n"
                "Wants=network-online.target\n"
                "\n"
                "[Service]\n"
                "User=1000\n"
                "Group=100\n"
                "EnvironmentFile=/etc/kioskhub/server.env\n"
                "Environment=HOME=/home/jovyan\n"
                "WorkingDirectory=/home/jovyan\n"
                "ExecStart=/usr/local/bin/jupyterhub-singleuser --debug\n"
                "ExecStopPost=/bin/sh -c '[ \"$SERVICE_RESULT\" = success ] || "
                f"echo {FAILURE_MARKER} $SERVICE_RESULT >/dev/console'\n"
                "Restart=no\n",
            },
        ],
        "fs_setup": [
            {
                "label": "kh-home",
                "filesystem": "ext4",
                "device": "/dev/disk/by-id/virtio-0f1e2d3c-4b5a-6978-8",
                "overwrite": False,
            }
        ],
        "mounts": [
            [
                "/dev/disk/by-id/virtio-0f1e2d3c-4b5a-6978-8",
                "/home/jovyan",
                "ext4",
                "defaults,nofail",
                "0",
                "2",
            ]
        ],
        "runcmd": [
            ["mkdir", "-p", "/home/jovyan"],
            ["sh", "-c", "mountpoint -q /home/jovyan || mount /home/jovyan"],
            ["chown", "1000:100", "/home/jovyan"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "start", "--no-block", "kioskhub-server.service"],
        ],
    }


def test_the_generic_image_pulls_the_environment_and_runs_it_with_podman():
    document = valid(
        render_user_data(
            server(
                container_image="localhost:5000/envs/root:abc",
                insecure_registries=("localhost:5000",),
                uid=1001,
                gid=1001,
            )
        )
    )
    env, unit = document["write_files"]
    assert env["permissions"] == "0600"
    # podman's --env-file takes the rest of the line as it is: no quotes added.
    assert env["content"].splitlines()[2] == (
        'JUPYTERHUB_OAUTH_SCOPES=["access:servers!server=ada/"]'
    )
    exec_start = next(line for line in unit["content"].splitlines() if "ExecStart=" in line)
    assert exec_start == (
        "ExecStart=/usr/bin/podman run --rm --replace --name=kioskhub-server --network=host "
        "--pull=missing --tls-verify=false --env-file=/etc/kioskhub/server.env "
        "--user=1001:1001 --volume=/home/jovyan:/home/jovyan --workdir=/home/jovyan "
        "--env=HOME=/home/jovyan localhost:5000/envs/root:abc jupyterhub-singleuser --debug"
    )
    assert "User=" not in unit["content"]  # podman runs as root, the server as 1001
    assert document["runcmd"][2] == ["chown", "1001:1001", "/home/jovyan"]


def test_registries_not_listed_as_insecure_keep_tls():
    unit = user_data_document(server(container_image="registry.example.org/env:1"))
    assert "--tls-verify" not in unit["write_files"][1]["content"]


def test_hostile_values_stay_one_argument_and_one_line():
    """A value with quotes, spaces, $ and % neither splits an argument nor expands."""
    text = render_user_data(
        server(
            args=("--notebook-dir=/home/jovyan/my $HOME %h",),
            server_env={"KIOSKHUB_ENVIRONMENT": 'x" ; rm -rf / ; "'},
        )
    )
    document = valid(text)
    env, unit = document["write_files"]
    assert env["content"] == 'KIOSKHUB_ENVIRONMENT="x\\" ; rm -rf / ; \\""\n'
    assert (
        'ExecStart=/usr/local/bin/jupyterhub-singleuser "--notebook-dir=/home/jovyan/my $$HOME '
        '%%h"\n' in unit["content"]
    )


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"A": "one\nEVIL=two"}, "line break"),
        ({"A;B": "x"}, "cannot be passed"),
        ({"1A": "x"}, "cannot be passed"),
    ],
)
def test_values_that_an_env_file_cannot_carry_are_refused(env, problem):
    with pytest.raises(UserDataError, match=problem):
        env_file(env, quoted=True)


def test_the_schema_refuses_what_cloud_init_would_refuse():
    """The validation can fail: a wrong type in a module's key is caught."""
    document = user_data_document(server())
    document["write_files"][0]["permissions"] = 600
    with pytest.raises(jsonschema.ValidationError):
        valid("#cloud-config\n" + yaml.safe_dump(document))
