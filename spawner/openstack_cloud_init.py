"""The cloud-init user-data of a user server's VM: a pure function of what the VM runs.

``render_user_data`` returns a ``#cloud-config`` document (cloud-init's schema validates it in
the tests) that

- writes the server's environment (the hub API token and URLs) to ``/etc/kioskhub/server.env``,
  mode 0600, owned by root: the server's service reads it, no other account of the VM can;
- formats the user's Cinder home volume when it is blank (``fs_setup`` never overwrites a
  filesystem) and mounts it on the home folder, owned by the server's account;
- starts ``jupyterhub-singleuser`` as a systemd service that connects back to the hub: from the
  VM's image itself (a Glance image with the environment), or in the environment's container
  image, pulled and run with podman (the generic image).

A failed service start prints ``FAILURE_MARKER`` on the VM's console, where the backend reads
it (with the console's last lines) to tell the user why their server did not start.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import yaml

ENV_FILE = "/etc/kioskhub/server.env"
SERVICE = "kioskhub-server.service"
HOME_LABEL = "kh-home"
FAILURE_MARKER = "KIOSKHUB-SERVER-FAILED"
"""Printed on the console when the server's service cannot start."""


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
    singleuser: str = "/usr/local/bin/jupyterhub-singleuser"
    """The server's program in the VM's image (without a container image)."""
    insecure_registries: tuple[str, ...] = ()
    """Registries podman pulls from without TLS."""
    hostname: str = "kioskhub-server"


def home_device(volume_id: str) -> str:
    """The device of an attached volume: Nova gives virtio disks the volume id (cut to the
    20 characters virtio keeps) as serial, which udev names under /dev/disk/by-id."""
    return f"/dev/disk/by-id/virtio-{volume_id[:20]}"


def env_line(key: str, value: str, quoted: bool) -> str:
    """One ``KEY=value`` line; ``quoted`` for systemd's EnvironmentFile (which removes quotes
    and backslashes), plain for podman's --env-file (which takes the rest of the line)."""
    if not key.replace("_", "").isalnum() or key[0].isdigit():
        raise UserDataError(f"the environment variable name {key!r} cannot be passed to a VM")
    if "\n" in value or "\r" in value or "\0" in value:
        raise UserDataError(f"the value of {key} has a line break, which no env file can carry")
    if not quoted:
        return f"{key}={value}"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{key}="{escaped}"'


def env_file(env: dict[str, str], quoted: bool) -> str:
    return "".join(env_line(key, env[key], quoted) + "\n" for key in sorted(env))


def server_command(server: VmServer) -> list[str]:
    """The service's ExecStart: the server itself, or podman running it in its image."""
    if server.container_image is None:
        return [server.singleuser, *server.args]
    tls = ["--tls-verify=false"] if _insecure(server) else []
    return [
        "/usr/bin/podman",
        "run",
        "--rm",
        "--replace",
        "--name=kioskhub-server",
        "--network=host",
        "--pull=missing",
        *tls,
        f"--env-file={ENV_FILE}",
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


def service_unit(server: VmServer) -> str:
    """The systemd unit of the server; its failure is printed on the console."""
    command = " ".join(_systemd_quote(arg) for arg in server_command(server))
    account = (
        ""
        if server.container_image
        else f"User={server.uid}\nGroup={server.gid}\nEnvironmentFile={ENV_FILE}\n"
        f"Environment=HOME={server.home_path}\n"
    )
    return (
        "[Unit]\n"
        "Description=KioskHub user server\n"
        "After=network-online.target home.mount\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        f"{account}"
        f"WorkingDirectory={server.home_path}\n"
        f"ExecStart={command}\n"
        f"ExecStopPost=/bin/sh -c '[ \"$SERVICE_RESULT\" = success ] || "
        f"echo {FAILURE_MARKER} $SERVICE_RESULT >/dev/console'\n"
        "Restart=no\n"
    )


def _systemd_quote(arg: str) -> str:
    """One ExecStart argument: systemd splits on spaces and expands % and $."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if any(c in escaped for c in ' \t"\'\\;'):
        return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def user_data_document(server: VmServer) -> dict:
    """The cloud-config document as a dict (``render_user_data`` writes it out)."""
    device = home_device(server.home_volume_id)
    owner = f"{server.uid}:{server.gid}"
    home = shlex.quote(server.home_path)
    return {
        "hostname": server.hostname,
        "write_files": [
            {
                "path": ENV_FILE,
                "owner": "root:root",
                "permissions": "0600",
                "content": env_file(server.server_env, quoted=server.container_image is None),
            },
            {
                "path": f"/etc/systemd/system/{SERVICE}",
                "owner": "root:root",
                "permissions": "0644",
                "content": service_unit(server),
            },
        ],
        "fs_setup": [
            {"label": HOME_LABEL, "filesystem": "ext4", "device": device, "overwrite": False}
        ],
        "mounts": [[device, server.home_path, "ext4", "defaults,nofail", "0", "2"]],
        "runcmd": [
            ["mkdir", "-p", server.home_path],
            ["sh", "-c", f"mountpoint -q {home} || mount {home}"],
            ["chown", owner, server.home_path],
            ["systemctl", "daemon-reload"],
            ["systemctl", "start", "--no-block", SERVICE],
        ],
    }


def render_user_data(server: VmServer) -> str:
    """The VM's user-data: ``#cloud-config`` and the document, as cloud-init reads it."""
    body = yaml.safe_dump(user_data_document(server), sort_keys=False, width=1000)
    return "#cloud-config\n" + body
