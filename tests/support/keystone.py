"""A real Keystone (PyPI ``keystone``, SQLite) served on a free loopback port.

``start_keystone(folder)`` copies a Keystone that keystone-manage bootstrapped once (the
database synced, the Fernet and credential keys, the admin and the identity endpoint in the
catalog), writes its keystone.conf and serves Keystone's own WSGI application from its venv
(``make .venv-keystone/.installed``) on a free port. Then, as
the admin, it makes the lab's project and KioskHub's user (a member of it); as that user, an
application credential. ``register_service`` puts a simulated service into the catalog, where
openstacksdk finds it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import openstack
import requests

from tests.support.hub_process import REPO, free_port

KEYSTONE_VENV = REPO / ".venv-keystone"
REGION = "RegionOne"
ADMIN_PASSWORD = "admin-password-for-tests"
PROJECT = "lab"
USER = "kioskhub"
USER_PASSWORD = "kioskhub-password-for-tests"
DOMAIN = "Default"

SERVE = """
import os
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from keystone.server.wsgi import initialize_public_application


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


sys.argv[1:] = []  # oslo.config reads the command line
application = initialize_public_application()
port = int(os.environ["KEYSTONE_TEST_PORT"])
make_server("127.0.0.1", port, application, Server, Quiet).serve_forever()
"""


@dataclass
class Keystone:
    url: str
    """The identity API, http://127.0.0.1:PORT/v3."""
    process: subprocess.Popen
    log: Path
    project_id: str = ""
    user_id: str = ""
    credential_id: str = ""
    credential_secret: str = ""
    services: dict[str, str] = field(default_factory=dict)

    def admin(self) -> openstack.connection.Connection:
        return openstack.connect(
            auth_url=self.url,
            username="admin",
            password=ADMIN_PASSWORD,
            project_name="admin",
            user_domain_name=DOMAIN,
            project_domain_name=DOMAIN,
            region_name=REGION,
        )

    def user_auth(self) -> dict[str, str]:
        """openstacksdk's arguments for KioskHub's user, by password."""
        return dict(
            auth_url=self.url,
            username=USER,
            password=USER_PASSWORD,
            project_name=PROJECT,
            user_domain_name=DOMAIN,
            project_domain_name=DOMAIN,
            region_name=REGION,
        )

    def credential_auth(self) -> dict[str, str]:
        """openstacksdk's arguments for the application credential."""
        return dict(
            auth_type="v3applicationcredential",
            auth_url=self.url,
            application_credential_id=self.credential_id,
            application_credential_secret=self.credential_secret,
            region_name=REGION,
        )

    def site_openstack(self, folder: Path) -> dict:
        """The ``openstack:`` keys every test hub shares: the application credential (its
        secret in a 0600 file under ``folder``), the lab's network, the hub as qemu's VMs
        reach it, and 1 GB homes."""
        secret = folder / "credential-secret"
        secret.write_text(self.credential_secret + "\n")
        secret.chmod(0o600)
        return {
            "application_credential": {
                "auth_url": self.url, "id": self.credential_id, "secret_file": str(secret),
            },
            "network": "lab-net",
            "hub_address": "10.0.2.2",
            "home_volume_size": 1,
        }

    def register_service(self, service_type: str, name: str, url: str) -> None:
        """Put a service with its public endpoint ``url`` into the catalog."""
        admin = self.admin()
        service = admin.identity.create_service(type=service_type, name=name, enabled=True)
        admin.identity.create_endpoint(
            service_id=service.id, interface="public", url=url, region_id=REGION
        )
        self.services[service_type] = url

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def keystone_python() -> Path:
    python = KEYSTONE_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(
            "the OpenStack tests need Keystone in its own venv: run "
            "`make .venv-keystone/.installed` in the checkout"
        )
    return python


def write_config(folder: Path) -> Path:
    for keys in ("fernet-keys", "credential-keys"):
        (folder / keys).mkdir(mode=0o700, exist_ok=True)
    config = folder / "keystone.conf"
    config.write_text(
        "[database]\n"
        f"connection = sqlite:///{folder / 'keystone.sqlite'}\n"
        "[fernet_tokens]\n"
        f"key_repository = {folder / 'fernet-keys'}\n"
        "[fernet_receipts]\n"
        f"key_repository = {folder / 'fernet-keys'}\n"
        "[credential]\n"
        f"key_repository = {folder / 'credential-keys'}\n"
        "[token]\n"
        "expiration = 7200\n"
        "[oslo_policy]\n"
        "enforce_new_defaults = true\n"
        "enforce_scope = true\n"
    )
    return config


def manage(folder: Path, config: Path, *args: str) -> None:
    manage_bin = KEYSTONE_VENV / "bin" / "keystone-manage"
    account = ["--keystone-user", "root", "--keystone-group", "root"]
    extra = account if args[0] in ("fernet_setup", "credential_setup") else []
    result = subprocess.run(
        [str(manage_bin), "--config-file", str(config), *args, *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=folder,
    )
    if result.returncode != 0:
        raise RuntimeError(f"keystone-manage {args[0]} failed:\n{result.stderr[-3000:]}")


PLACEHOLDER_URL = "http://127.0.0.1:1/v3"


def bootstrapped_template() -> Path:
    """A bootstrapped Keystone (database, Fernet and credential keys, the admin and the
    identity endpoint at ``PLACEHOLDER_URL``), made once per Keystone venv: each
    keystone-manage run takes seconds, so every test Keystone starts from a copy."""
    template = KEYSTONE_VENV / "test-template"
    if (template / ".complete").exists():
        return template
    building = KEYSTONE_VENV / f"test-template.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    config = write_config(building)
    manage(building, config, "db_sync")
    manage(building, config, "fernet_setup")
    manage(building, config, "credential_setup")
    manage(
        building,
        config,
        "bootstrap",
        "--bootstrap-password",
        ADMIN_PASSWORD,
        "--bootstrap-public-url",
        PLACEHOLDER_URL,
        "--bootstrap-region-id",
        REGION,
    )
    (building / ".complete").touch()
    try:
        building.rename(template)
    except OSError:  # another run made it first
        shutil.rmtree(building, ignore_errors=True)
    return template


def start_keystone(folder: Path) -> Keystone:
    """Serve a copy of the bootstrapped Keystone from ``folder``; wait until it answers."""
    python = keystone_python()
    shutil.copytree(bootstrapped_template(), folder, dirs_exist_ok=True)
    config = write_config(folder)
    port = free_port()
    url = f"http://127.0.0.1:{port}/v3"
    with sqlite3.connect(folder / "keystone.sqlite") as database:
        database.execute("UPDATE endpoint SET url = ? WHERE url = ?", (url, PLACEHOLDER_URL))
    log = folder / "keystone.log"
    env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(config), "KEYSTONE_TEST_PORT": str(port)}
    env.pop("VIRTUAL_ENV", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "-c", SERVE],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=folder,
        )
    keystone = Keystone(url=url, process=process, log=log)
    try:
        wait_for(keystone)
        make_lab_project(keystone)
    except BaseException:
        keystone.stop()
        raise
    return keystone


def wait_for(keystone: Keystone, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if keystone.process.poll() is not None:
            raise RuntimeError(f"Keystone exited:\n{keystone.log_text()[-3000:]}")
        try:
            if requests.get(keystone.url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"Keystone did not answer in {timeout} s:\n{keystone.log_text()[-3000:]}")


def make_lab_project(keystone: Keystone) -> None:
    """The lab's project, KioskHub's user in it (member), and its application credential."""
    admin = keystone.admin()
    domain = admin.identity.find_domain(DOMAIN.lower()) or admin.identity.find_domain(DOMAIN)
    project = admin.identity.create_project(name=PROJECT, domain_id=domain.id)
    user = admin.identity.create_user(
        name=USER, password=USER_PASSWORD, domain_id=domain.id, default_project_id=project.id
    )
    member = admin.identity.find_role("member")
    admin.identity.assign_project_role_to_user(project, user, member)
    keystone.project_id, keystone.user_id = project.id, user.id
    own = openstack.connect(**keystone.user_auth())
    credential = own.identity.create_application_credential(
        user=user.id, name="kioskhub-hub", description="KioskHub's hub"
    )
    keystone.credential_id, keystone.credential_secret = credential.id, credential.secret


if __name__ == "__main__":  # serve one for a look: python -m tests.support.keystone FOLDER
    started = start_keystone(Path(sys.argv[1]))
    print(started.url, started.credential_id, flush=True)
    started.process.wait()
