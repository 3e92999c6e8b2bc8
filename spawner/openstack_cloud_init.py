"""The cloud-init user-data of a user server's VM: a pure function of what the VM runs.

``render_user_data`` returns a ``#cloud-config`` document (cloud-init's schema validates it in
the tests) that

- writes the server's environment (the hub API token and URLs) to ``/etc/kioskhub/server.env``,
  mode 0600, owned by root, each value shell-quoted: only the start script reads it;
- formats the user's Cinder home volume when it is blank (no file system on it) and mounts it
  on the home folder, owned by the server's account (``kioskhub-home``);
- starts ``jupyterhub-singleuser``, which connects back to the hub, in the background
  (``kioskhub-server``): from the VM's image itself as the server's account (a Glance image
  with the environment), or in the environment's container image, pulled and run by podman
  (the generic image). It needs no systemd, so small images boot it too.

The volume is found by the serial Nova gives a virtio disk (the volume id, cut to 20
characters) under /dev/disk/by-id where udev names it, else as the first disk after the root.
A server that exits with an error prints its log's last lines and ``FAILURE_MARKER`` on the
VM's console, where the backend reads them to tell the user why their server did not start.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import yaml

ENV_FILE = "/etc/kioskhub/server.env"
HOME_SCRIPT = "/usr/local/sbin/kioskhub-home"
SERVER_SCRIPT = "/usr/local/sbin/kioskhub-server"
HOME_LABEL = "kh-home"
FAILURE_MARKER = "KIOSKHUB-SERVER-FAILED"
"""Printed on the console when the server exits with an error."""


class UserDataError(ValueError):
    """The server cannot be described to cloud-init (a value that no env file can carry)."""


@dataclass(frozen=True)
class VmServer:
    """What one VM runs: the server, its account, its home and its environment."""

    server_env: dict[str, str]
    """The server's environment: JupyterHub's (API token, URLs as the VM reaches them)."""
    args: tuple[str, ...]
    """Arguments of jupyterhub-singleuser."""
    home_volume_id: str
    """The Cinder volume of the user's home."""
    home_path: str = "/home/jovyan"
    uid: int = 1000
    gid: int = 100
    container_image: str | None = None
    """Run the server in this image with podman; None: the VM's image has the server."""
    singleuser: str = "/opt/kioskhub/bin/jupyterhub-singleuser"
    """The server's program in the VM's image (without a container image)."""
    insecure_registries: tuple[str, ...] = ()
    """Registries podman pulls from without TLS."""
    hostname: str = "kioskhub-server"


def home_device(volume_id: str) -> str:
    """The by-id name of an attached volume: Nova gives virtio disks the volume id (cut to
    the 20 characters virtio keeps) as their serial."""
    return f"/dev/disk/by-id/virtio-{volume_id[:20]}"


FIRST_DATA_DISK = "/dev/vdb"
"""Where the home volume is without udev: the first disk after the root disk."""
SERVER_LOG = "/var/log/kioskhub-server.log"


def env_line(key: str, value: str) -> str:
    """One ``KEY='value'`` line that a POSIX shell reads back as exactly ``value``."""
    if not key.replace("_", "").isalnum() or not key.isascii() or key[0].isdigit():
        raise UserDataError(f"the environment variable name {key!r} cannot be passed to a VM")
    if "\0" in value:
        raise UserDataError(f"the value of {key} has a NUL character, which no shell can carry")
    return f"{key}={shlex.quote(value)}"


def env_file(env: dict[str, str]) -> str:
    return "".join(env_line(key, env[key]) + "\n" for key in sorted(env))


def server_command(server: VmServer) -> list[str]:
    """The server itself as its account, or podman running it in its image."""
    if server.container_image is None:
        return [
            "setpriv",
            f"--reuid={server.uid}",
            f"--regid={server.gid}",
            "--clear-groups",
            "--",
            server.singleuser,
            *server.args,
        ]
    tls = ["--tls-verify=false"] if _insecure(server) else []
    return [
        "podman",
        "run",
        "--rm",
        "--replace",
        "--name=kioskhub-server",
        "--network=host",
        "--pull=missing",
        *tls,
        *(f"--env={key}" for key in sorted(server.server_env)),
        f"--user={server.uid}:{server.gid}",
        f"--volume={server.home_path}:{server.home_path}",
        f"--workdir={server.home_path}",
        f"--env=HOME={server.home_path}",
        server.container_image,
        "jupyterhub-singleuser",
        *server.args,
    ]


def _insecure(server: VmServer) -> bool:
    registry = (server.container_image or "").split("/", 1)[0]
    return registry in server.insecure_registries


def home_script(server: VmServer) -> str:
    """Find the home volume, give it a file system when it has none, mount it, own it."""
    home = shlex.quote(server.home_path)
    return (
        "#!/bin/sh\n"
        "# KioskHub: the user's home volume, formatted only when blank.\n"
        "set -e\n"
        f"device={shlex.quote(home_device(server.home_volume_id))}\n"
        f'[ -b "$device" ] || device={FIRST_DATA_DISK}\n'
        'blkid "$device" >/dev/null 2>&1 || mkfs.ext4 -q -L ' + HOME_LABEL + ' "$device"\n'
        f"mkdir -p {home}\n"
        f'mountpoint -q {home} || mount "$device" {home}\n'
        f"chown {server.uid}:{server.gid} {home}\n"
    )


def server_script(server: VmServer) -> str:
    """Run the server with its environment; on failure, its last log lines and the marker
    go to the console."""
    home = shlex.quote(server.home_path)
    return (
        "#!/bin/sh\n"
        "# KioskHub: the user's server, connecting back to the hub.\n"
        "set -a\n"
        f". {ENV_FILE}\n"
        "set +a\n"
        f"export HOME={home}\n"
        f"cd {home} || exit 1\n"
        f"{shlex.join(server_command(server))} >>{SERVER_LOG} 2>&1\n"
        "status=$?\n"
        'if [ "$status" -ne 0 ]; then\n'
        f"    tail -n 20 {SERVER_LOG} >/dev/console\n"
        f'    echo "{FAILURE_MARKER} exit status $status" >/dev/console\n'
        "fi\n"
    )


def user_data_document(server: VmServer) -> dict:
    """The cloud-config document as a dict (``render_user_data`` writes it out)."""
    return {
        "hostname": server.hostname,
        "write_files": [
            {
                "path": ENV_FILE,
                "owner": "root:root",
                "permissions": "0600",
                "content": env_file(server.server_env),
            },
            {
                "path": HOME_SCRIPT,
                "owner": "root:root",
                "permissions": "0700",
                "content": home_script(server),
            },
            {
                "path": SERVER_SCRIPT,
                "owner": "root:root",
                "permissions": "0700",
                "content": server_script(server),
            },
        ],
        "runcmd": [
            [HOME_SCRIPT],
            ["sh", "-c", f"setsid {SERVER_SCRIPT} </dev/null >/dev/null 2>&1 &"],
        ],
    }


def render_user_data(server: VmServer) -> str:
    """The VM's user-data: ``#cloud-config`` and the document, as cloud-init reads it."""
    body = yaml.safe_dump(user_data_document(server), sort_keys=False, width=1000)
    return "#cloud-config\n" + body
