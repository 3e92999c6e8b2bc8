"""The CI template's jobs run by ``gitlab-ci-local`` (npm), which follows GitLab's own job
semantics: includes, rules, variables and their precedence, before_script and script in one
shell, job status.

``CiProject`` is a git repository in a test's folder whose ``.gitlab-ci.yml`` includes the
shipped template (copied into the repository, as ``include: local`` needs), with an
``origin`` remote on a GitLab host, so that the predefined variables (``CI_PROJECT_PATH``,
``CI_COMMIT_SHA``, ...) are GitLab's. Jobs without an image run on the shell executor.
A missing ``gitlab-ci-local`` or ``rsync`` (which it copies the checkout with) fails the
test, naming how to install it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from kioskhub.hub.schema.gitlab import CI_TEMPLATE

REPO = Path(__file__).resolve().parents[2]
GITLAB_CI_LOCAL = REPO / "node_modules" / ".bin" / "gitlab-ci-local"
TEMPLATE_IN_PROJECT = ".gitlab/kioskhub-env.gitlab-ci.yml"
PROJECT_REMOTE = "https://gitlab.example.org/lab/analysis.git"
PREDEFINED_SET_BY_TESTS = (
    "CI_PIPELINE_SOURCE",
    "CI_PROJECT_DIR",
    "CI_REGISTRY",
    "CI_REGISTRY_IMAGE",
    "CI_REGISTRY_USER",
    "CI_REGISTRY_PASSWORD",
)
"""Predefined variables the tests set, as a GitLab instance would (its registry, the job
token); gitlab-ci-local warns about each unless told."""


def require_gitlab_ci_local() -> Path:
    """The program, or a failed test saying how to install what is missing."""
    if not GITLAB_CI_LOCAL.exists():
        pytest.fail(f"{GITLAB_CI_LOCAL} is missing: run `make node_modules/.installed` (npm ci)")
    if not shutil.which("rsync"):
        pytest.fail(
            "gitlab-ci-local copies the checkout with rsync, which this machine lacks: run "
            "tests/require-system-packages as root (apt-get install rsync)"
        )
    return GITLAB_CI_LOCAL


@dataclass(frozen=True)
class CiProject:
    """A committed repository that includes the template; ``sha`` is its commit."""

    folder: Path
    sha: str

    @classmethod
    def create(cls, folder: Path, files: dict[str, str], gitlab_ci: str = "") -> CiProject:
        """Commit ``files`` and a ``.gitlab-ci.yml`` that includes the template, then
        ``gitlab_ci`` (the project's own additions, in GitLab's merge order)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        template = folder / TEMPLATE_IN_PROJECT
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CI_TEMPLATE, template)
        (folder / ".gitlab-ci.yml").write_text(
            f"include:\n  - local: {TEMPLATE_IN_PROJECT}\n{gitlab_ci}"
        )
        git = ["git", "-C", str(folder), "-c", "user.name=Ada", "-c", "user.email=ada@lab.test"]
        for argv in (
            [*git, "init", "--quiet", "--initial-branch=main"],
            [*git, "remote", "add", "origin", PROJECT_REMOTE],
            [*git, "add", "--all"],
            [*git, "commit", "--quiet", "--message", "An environment"],
            # As in a runner's clone: origin/main and origin's default branch.
            [*git, "update-ref", "refs/remotes/origin/main", "HEAD"],
            [*git, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
        sha = subprocess.run(
            [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        return cls(folder, sha)

    def command(self, variables: dict[str, str], *options: str) -> list[str]:
        argv = [
            str(require_gitlab_ci_local()),
            "--home",
            str(self.folder.parent / "gitlab-ci-local-home"),
            "--no-color",
            "--ignore-predefined-vars",
            ",".join(PREDEFINED_SET_BY_TESTS),
            *options,
        ]
        for key, value in variables.items():
            argv += ["--variable", f"{key}={value}"]
        return argv

    def pipeline_jobs(self, variables: dict[str, str]) -> dict[str, str]:
        """Each job's ``when`` after GitLab's rules: "never" means not in the pipeline."""
        listed = subprocess.run(
            self.command(variables, "--list-json"),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return {job["name"]: job["when"] for job in json.loads(listed.stdout)}

    def run_pipeline(
        self,
        variables: dict[str, str],
        *options: str,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        """Run the pipeline (the jobs its rules select); output is each job's log lines."""
        return subprocess.run(
            self.command(variables, *options),
            cwd=self.folder,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def job_log(process: subprocess.CompletedProcess, job: str) -> str:
    """What ``job`` printed, stdout and stderr: gitlab-ci-local writes ``<job> > <line>``
    (the name padded to the longest job's)."""
    line_of_job = re.compile(rf"^{re.escape(job)} *> ?(.*)$")
    return "\n".join(
        found.group(1)
        for line in (process.stdout + process.stderr).splitlines()
        if (found := line_of_job.match(line))
    )
