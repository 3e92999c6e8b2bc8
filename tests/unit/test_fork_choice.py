"""Which starts a fork server serves, the parent's environment, and the parent's checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from kioskhub.hub.schema.site import Site
from kioskhub.spawner import fork_parent
from kioskhub.spawner.fork_choice import (
    fork_refusal,
    parent_environment,
    prewarm_prefixes,
    trusted_prefixes,
)
from kioskhub.spawner.fork_servers import ForkServers, not_the_standard_server, unsafe_for_root
from kioskhub.spawner.launch_spec import EnvironmentSpec, LaunchSpec

OWN = Path("/opt/kioskhub/.venv")


def site(tmp_path, **spawner) -> Site:
    (tmp_path / "examples").mkdir(exist_ok=True)
    (tmp_path / "analysis").mkdir(exist_ok=True)
    return Site.model_validate(
        {
            "hub": {"state_dir": str(tmp_path / "state")},
            "auth": {"shared_password": "correct-horse"},
            "examples": {"source": str(tmp_path / "examples")},
            "environments": [
                {"name": "default", "default": True},
                {"name": "analysis", "path": str(tmp_path / "analysis")},
                {"name": "thesis", "kind": "repository", "repository": "https://x/thesis.git"},
            ],
            "spawner": spawner,
        }
    )


def spec(environment: EnvironmentSpec) -> LaunchSpec:
    return LaunchSpec(
        username="ada",
        environment=environment,
        profile="small",
        cpu=1,
        memory_bytes=2**30,
        home=Path("/homes/ada"),
        default_url="/lab",
    )


def test_as_root_only_the_sites_own_venvs_are_served(tmp_path):
    config = site(tmp_path)
    own, analysis = (
        EnvironmentSpec("default", "venv"),
        EnvironmentSpec("analysis", "venv", tmp_path / "analysis"),
    )
    built = EnvironmentSpec("thesis", "venv", tmp_path / "builds" / "thesis" / "venv")
    catalog = EnvironmentSpec("ada-thesis", "venv", Path("/srv/builds/ada/thesis"))
    assert trusted_prefixes(config, OWN) == {OWN, tmp_path / "analysis"}
    assert fork_refusal(config, spec(own), OWN, as_root=True) is None
    assert fork_refusal(config, spec(analysis), OWN, as_root=True) is None
    for environment in (built, catalog):
        assert fork_refusal(config, spec(environment), OWN, as_root=True) == (
            f"the environment {environment.name!r} was built from a repository, and a fork "
            "server would import its code as root"
        )
    # Without root the parent runs as the hub's account, as every server does.
    assert fork_refusal(config, spec(catalog), OWN, as_root=False) is None


def test_off_or_an_image_starts_normally(tmp_path):
    own = spec(EnvironmentSpec("default", "venv"))
    assert fork_refusal(site(tmp_path, fork_server=False), own, OWN, True) == (
        "spawner.fork_server is off"
    )
    image = replace(own, environment=EnvironmentSpec("r", "image", image="registry/r:1"))
    assert fork_refusal(site(tmp_path), image, OWN, True) == "the environment 'r' is not a venv"


def test_prewarm_names_venv_environments_only(tmp_path):
    config = site(tmp_path, fork_server_prewarm=["analysis", "default"])
    assert prewarm_prefixes(config, OWN) == (tmp_path / "analysis", OWN)
    with pytest.raises(ValidationError) as error:
        site(tmp_path, fork_server_prewarm=["thesis"])
    assert (
        "spawner.fork_server_prewarm: thesis is not an environment of kind venv; those are: "
        "default, analysis"
    ) in str(error.value)


def test_the_parent_starts_with_no_user_home_or_token():
    hub_env = {
        "PATH": "/hub/bin",
        "LANG": "C.UTF-8",
        "JUPYTERHUB_API_TOKEN": "hub-secret",
        "CONFIGPROXY_AUTH_TOKEN": "proxy-secret",
        "HOME": "/root",
        "PYTHONPATH": "/site/lib",
    }
    assert parent_environment(hub_env, Path("/venvs/a")) == {
        "LANG": "C.UTF-8",
        "PYTHONPATH": "/site/lib",
        "PATH": "/venvs/a/bin:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": "/venvs/a",
        "HOME": "/nonexistent",
        "KIOSKHUB_FORK_ENVIRONMENT_SPACE": "." * 65536,
    }


def test_the_registry_is_shared_by_every_spawner(tmp_path):
    """traitlets deep-copies config values into each spawner; the parents must be one set."""
    import copy

    servers = ForkServers(tmp_path, (), as_root=True)
    assert copy.deepcopy({"fork_servers": servers})["fork_servers"] is servers


def test_a_venv_someone_else_can_write_is_not_imported_by_root(tmp_path):
    folder = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    if os.geteuid() != 0:
        assert unsafe_for_root(folder) is not None  # not root's at all
        return
    tmp_path.chmod(0o755)
    assert unsafe_for_root(folder) is None
    site_packages = next(folder.glob("lib/python*/site-packages"))
    hostile = site_packages / "hostile.pth"
    hostile.write_text("import os\n")
    hostile.chmod(0o666)
    assert unsafe_for_root(folder) == f"{hostile} is writable by an account other than root"
    hostile.chmod(0o644)
    os.chown(hostile, 65534, 65534)
    assert unsafe_for_root(folder) == f"{hostile} is writable by an account other than root"
    hostile.unlink()
    (folder / "lib").chmod(0o777)
    assert unsafe_for_root(folder) == f"{folder / 'lib'} is writable by an account other than root"
    (folder / "lib").chmod(0o755)
    assert unsafe_for_root(tmp_path) == f"{tmp_path} is not a venv"


def test_the_parent_reads_the_extensions_its_venv_enables(tmp_path):
    config = tmp_path / "etc" / "jupyter" / "jupyter_server_config.d"
    config.mkdir(parents=True)
    (config / "a.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"lab_ext": True, "off_ext": False}}})
    )
    (config / "broken.json").write_text("{not json")
    assert fork_parent.extension_modules(str(tmp_path)) == ["lab_ext"]


def test_the_parent_refuses_to_fork_with_a_thread_or_a_loop(tmp_path):
    code = (
        "import asyncio, sys, threading, time\n"
        f"sys.path.insert(0, {str(Path(fork_parent.__file__).parent)!r})\n"
        "import fork_parent\n"
        "print(fork_parent.fork_hazards(-1))\n"
        "loop = asyncio.new_event_loop(); asyncio.set_event_loop(loop)\n"
        "fork_parent.discard_idle_loop()\n"
        "print(fork_parent.fork_hazards(-1), loop.is_closed())\n"
        "asyncio.set_event_loop(asyncio.new_event_loop())\n"
        "threading.Thread(target=time.sleep, args=(2,), name='pool', daemon=True).start()\n"
        "print(fork_parent.fork_hazards(-1))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == "[] True"
    assert out[2].startswith("['thread pool', 'an event loop', 'an open socket (fd ")


def test_a_venv_whose_server_is_another_program_starts_fresh(tmp_path):
    script = tmp_path / "bin" / "jupyterhub-singleuser"
    script.parent.mkdir()
    assert not_the_standard_server(tmp_path) == (
        f"{script} cannot be read (No such file or directory)"
    )
    script.write_text("#!/bin/sh\necho 'ModuleNotFoundError: jupyterlab' >&2\nexit 3\n")
    assert not_the_standard_server(tmp_path) == f"{script} is not JupyterHub's own start script"
    script.write_text(
        f"#!{tmp_path}/bin/python\nimport sys\nfrom jupyterhub.singleuser import main\n"
        "if __name__ == '__main__':\n    sys.exit(main())\n"
    )
    assert not_the_standard_server(tmp_path) is None
    assert not_the_standard_server(Path(sys.prefix)) is None  # KioskHub's own, as installed
