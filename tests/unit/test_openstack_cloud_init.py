"""The VM's cloud-init user-data: literal documents, validated by cloud-init's own schema."""

from __future__ import annotations

import json
import shlex
import subprocess
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


HOME_SCRIPT = (
    "#!/bin/sh\n"
    "# KioskHub: the user's home volume, formatted only when blank.\n"
    "set -e\n"
    "device=/dev/disk/by-id/virtio-0f1e2d3c-4b5a-6978-8\n"
    '[ -b "$device" ] || device=/dev/vdb\n'
    'blkid "$device" >/dev/null 2>&1 || mkfs.ext4 -q -L kh-home "$device"\n'
    "mkdir -p /home/jovyan\n"
    'mountpoint -q /home/jovyan || mount "$device" /home/jovyan\n'
    "chown {owner} /home/jovyan\n"
)


def server_script(command: str) -> str:
    return (
        "#!/bin/sh\n"
        "# KioskHub: the user's server, connecting back to the hub.\n"
        "set -a\n"
        ". /etc/kioskhub/server.env\n"
        "set +a\n"
        "export HOME=/home/jovyan\n"
        "cd /home/jovyan || exit 1\n"
        f"{command} >>/var/log/kioskhub-server.log 2>&1\n"
        "status=$?\n"
        'if [ "$status" -ne 0 ]; then\n'
        "    tail -n 20 /var/log/kioskhub-server.log >/dev/console\n"
        f'    echo "{FAILURE_MARKER} exit status $status" >/dev/console\n'
        "fi\n"
    )


def test_a_glance_image_runs_the_server_itself_with_the_env_file_closed_to_others():
    document = valid(render_user_data(server()))
    assert document == {
        "hostname": "kioskhub-server",
        "write_files": [
            {
                "path": "/etc/kioskhub/server.env",
                "owner": "root:root",
                "permissions": "0600",
                "content": "JUPYTERHUB_API_TOKEN=secret-token\n"
                "JUPYTERHUB_API_URL=http://10.0.2.2:8081/hub/api\n"
                "JUPYTERHUB_OAUTH_SCOPES='[\"access:servers!server=ada/\"]'\n",
            },
            {
                "path": "/usr/local/sbin/kioskhub-home",
                "owner": "root:root",
                "permissions": "0700",
                "content": HOME_SCRIPT.format(owner="1000:100"),
            },
            {
                "path": "/usr/local/sbin/kioskhub-server",
                "owner": "root:root",
                "permissions": "0700",
                "content": server_script(
                    "setpriv --reuid=1000 --regid=100 --clear-groups -- "
                    "/opt/kioskhub/bin/jupyterhub-singleuser --debug"
                ),
            },
        ],
        "runcmd": [
            ["/usr/local/sbin/kioskhub-home"],
            ["sh", "-c", "setsid /usr/local/sbin/kioskhub-server </dev/null >/dev/null 2>&1 &"],
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
    _, home, start = document["write_files"]
    assert home["content"] == HOME_SCRIPT.format(owner="1001:1001")
    assert start["content"] == server_script(
        "podman run --rm --replace --name=kioskhub-server --network=host --pull=missing "
        "--tls-verify=false --env=JUPYTERHUB_API_TOKEN --env=JUPYTERHUB_API_URL "
        "--env=JUPYTERHUB_OAUTH_SCOPES --user=1001:1001 --volume=/home/jovyan:/home/jovyan "
        "--workdir=/home/jovyan --env=HOME=/home/jovyan localhost:5000/envs/root:abc "
        "jupyterhub-singleuser --debug"
    )


def test_registries_not_listed_as_insecure_keep_tls():
    document = user_data_document(server(container_image="registry.example.org/env:1"))
    assert "--tls-verify" not in document["write_files"][2]["content"]


def test_hostile_values_stay_one_value_and_one_argument(tmp_path):
    """Quotes, ;, $, backquotes and line breaks in a value or an argument reach the server
    as they are: a shell reads the env file and the script back to exactly them."""
    hostile = "x'\" ; rm -rf / ; $(id) `id`\nEVIL=1"
    document = valid(
        render_user_data(server(args=(f"--notebook-dir={hostile}",), server_env={"V": hostile}))
    )
    env, _, start = document["write_files"]
    (tmp_path / "server.env").write_text(env["content"])
    shown = subprocess.run(
        ["sh", "-c", f"set -a; . {tmp_path / 'server.env'}; set +a; printf %s \"$V\""],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout == hostile
    script = start["content"]
    command = script.split("exit 1\n", 1)[1].split(" >>/var/log/kioskhub-server.log", 1)[0]
    assert shlex.split(command)[-1] == f"--notebook-dir={hostile}"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"A": "one\0two"}, "NUL"),
        ({"A;B": "x"}, "cannot be passed"),
        ({"1A": "x"}, "cannot be passed"),
        ({"É": "x"}, "cannot be passed"),
    ],
)
def test_values_that_an_env_file_cannot_carry_are_refused(env, problem):
    with pytest.raises(UserDataError, match=problem):
        env_file(env)


def test_the_schema_refuses_what_cloud_init_would_refuse():
    """The validation can fail: a wrong type in a module's key is caught."""
    document = user_data_document(server())
    document["write_files"][0]["permissions"] = 600
    with pytest.raises(jsonschema.ValidationError):
        valid("#cloud-config\n" + yaml.safe_dump(document))
