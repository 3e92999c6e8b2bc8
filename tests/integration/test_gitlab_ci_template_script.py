"""The CI template's script, run as GitLab's runner would run it (``sh``, one item after the
other, stopping at the first failure), with ``docker`` and ``repo2docker`` replaced by stand-ins
that record their arguments. ``docker run IMAGE CMD`` runs CMD here, in KioskHub's own venv,
so the smoke test really starts jupyterhub-singleuser and a kernel that executes 1+1 (tests
about other steps set ``DOCKER_RUN=record-only`` to skip that).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kioskhub.hub.schema.gitlab import CI_TEMPLATE

pytestmark = pytest.mark.integration

SHA = "0123456789abcdef0123456789abcdef01234567"
REGISTRY_IMAGE = "registry.example.org/lab/analysis"

DOCKER_STAND_IN = """#!{python}
import json, os, sys
args = sys.argv[1:]
entry = {{"argv": ["docker", *args]}}
if args[:1] == ["login"]:
    entry["password"] = sys.stdin.read().strip()
with open(os.environ["CALLS"], "a") as calls:
    calls.write(json.dumps(entry) + "\\n")
if args[:1] == ["run"] and os.environ.get("DOCKER_RUN") != "record-only":
    rest = args[1:]
    while rest[0].startswith("-"):
        rest = rest[1:]
    os.execvp(rest[1], rest[1:])
"""

RECORDER = """#!{python}
import json, os, sys
with open(os.environ["CALLS"], "a") as calls:
    calls.write(json.dumps({{"argv": [os.path.basename(sys.argv[0]), *sys.argv[1:]]}}) + "\\n")
"""


def job() -> dict:
    return yaml.safe_load(CI_TEMPLATE.read_text(encoding="utf-8"))["kioskhub-env"]


def expand(value: str, env: dict[str, str]) -> str:
    """GitLab's expansion of $NAME and ${NAME} in variable values."""
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), str(value)
    )


def run_job_script(tmp_path: Path, pipeline_variables: dict[str, str]):
    """Run the template's ``script`` with the job's variables; (process, recorded calls)."""
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "docker").write_text(DOCKER_STAND_IN.format(python=sys.executable))
    (shims / "repo2docker").write_text(RECORDER.format(python=sys.executable))
    for shim in shims.iterdir():
        shim.chmod(0o755)
    project_dir = tmp_path / "checkout"
    (project_dir / "envs" / "py").mkdir(parents=True)
    calls = tmp_path / "calls.jsonl"
    env = {
        "PATH": os.pathsep.join([str(shims), str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "HOME": str(tmp_path),
        "CALLS": str(calls),
        "CI_PROJECT_DIR": str(project_dir),
        "CI_COMMIT_SHA": SHA,
        "CI_COMMIT_REF_NAME": "main",
        "CI_REGISTRY": "registry.example.org",
        "CI_REGISTRY_IMAGE": REGISTRY_IMAGE,
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "job-token-secret",
        "CI_PIPELINE_SOURCE": "api",
    }
    for key, value in job()["variables"].items():
        env[key] = expand(value, env)
    env.update(pipeline_variables)  # pipeline variables win over the job's, as in GitLab
    script = "set -e\n" + "\n".join(job()["script"]) + "\n"
    process = subprocess.run(
        ["/bin/sh", "-c", script],
        env=env,
        cwd=project_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    recorded = (
        [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    )
    return process, recorded


def test_the_script_builds_smoke_tests_then_pushes_the_commit_tag(tmp_path):
    process, calls = run_job_script(
        tmp_path, {"KIOSKHUB_SUBDIR": "envs/py", "KIOSKHUB_REF": "main", "KIOSKHUB_BUILD": "1"}
    )

    assert process.returncode == 0, process.stderr
    image = f"{REGISTRY_IMAGE}/kioskhub-env:{SHA}"
    argvs = [call["argv"] for call in calls]
    assert argvs[0] == [
        "repo2docker",
        "--no-run",
        "--user-id",
        "1000",
        "--user-name",
        "jovyan",
        "--image-name",
        image,
        f"{tmp_path}/checkout/envs/py",
    ]
    assert argvs[1] == ["docker", "run", "--rm", image, "jupyterhub-singleuser", "--version"]
    assert argvs[2] == ["docker", "run", "--rm", "-i", image, "python", "-"]
    assert argvs[3][:2] == ["docker", "login"] and calls[3]["password"] == "job-token-secret"
    assert argvs[4] == ["docker", "push", image]
    assert "kernel executed 1+1 = 2" in process.stdout
    assert re.search(r"^\d+\.\d+", process.stdout, re.MULTILINE), "singleuser printed its version"
    assert f"KioskHub builds main ({SHA}) from 'envs/py' as {image}" in process.stdout


def test_a_variable_cannot_move_the_image_tag(tmp_path):
    process, calls = run_job_script(
        tmp_path, {"KIOSKHUB_IMAGE": "registry.example.org/x:latest", "DOCKER_RUN": "record-only"}
    )

    assert process.returncode == 0, process.stderr
    assert calls[-1]["argv"] == ["docker", "push", f"{REGISTRY_IMAGE}/kioskhub-env:{SHA}"]


@pytest.mark.parametrize(
    "subdir, message",
    [
        ("../../etc", "must be a folder inside the repository"),
        ("envs/../../x", "must be a folder inside the repository"),
        ("/etc", "must be a folder inside the repository"),
        ("envs/missing", "no folder 'envs/missing' in the repository"),
    ],
)
def test_a_bad_subdir_stops_the_job_before_anything_is_built(tmp_path, subdir, message):
    process, calls = run_job_script(tmp_path, {"KIOSKHUB_SUBDIR": subdir})

    assert process.returncode != 0
    assert message in process.stderr
    assert calls == []
