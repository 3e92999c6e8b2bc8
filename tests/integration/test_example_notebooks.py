"""Execute every example notebook headless against sample data."""

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from kioskhub.hub.sample_data import write_sample_data
from tests.conftest import open_folder
from tests.support.gateway_process import start_gateway

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "notebooks" / "examples"
EXAMPLE_NOTEBOOKS = sorted(EXAMPLES_DIR.glob("*.ipynb"))
EXPECTED_TEXT = {
    "getting-started.ipynb": "KioskHub is ready",
    "dask-scale-out.ipynb": "Dask cluster shut down",
}
NEEDS = {"dask-scale-out.ipynb": "dask_gateway_env"}
"""Fixtures that a notebook needs, by name; each gives environment variables for its kernel."""
WIDGET_STATE_KEY = "application/vnd.jupyter.widget-state+json"

pytestmark = pytest.mark.integration


def all_outputs(notebook):
    """Outputs of every cell, and those captured by Output widgets (e.g. from `interact`)."""
    for cell in notebook.cells:
        yield from cell.get("outputs", [])
    widget_models = notebook.metadata.get("widgets", {}).get(WIDGET_STATE_KEY, {}).get("state", {})
    for model in widget_models.values():
        if model.get("model_name") == "OutputModel":
            yield from model.get("state", {}).get("outputs", [])


def output_texts(notebook):
    """Text of every stream, result and display output."""
    for output in all_outputs(notebook):
        if output["output_type"] == "stream":
            yield output["text"]
        elif output["output_type"] in ("execute_result", "display_data"):
            yield output.get("data", {}).get("text/plain", "")


def error_outputs(notebook):
    return [output for output in all_outputs(notebook) if output["output_type"] == "error"]


@pytest.fixture(scope="module")
def dask_gateway_env():
    """A real Dask Gateway (KioskHub's backend and options) that ``Gateway()`` finds."""
    folder = open_folder("notebook-gateway")
    gateway = start_gateway(folder)
    yield gateway.env
    gateway.stop()
    shutil.rmtree(folder, ignore_errors=True)


def test_examples_exist():
    assert EXAMPLE_NOTEBOOKS, f"no example notebooks in {EXAMPLES_DIR}"


@pytest.mark.parametrize("source", EXAMPLE_NOTEBOOKS, ids=lambda path: path.name)
def test_example_notebook_runs(source, tmp_path, monkeypatch, request):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    notebook_path = work_dir / source.name
    shutil.copy(source, notebook_path)
    data_dir = tmp_path / "data"
    write_sample_data(data_dir)
    monkeypatch.setenv("KIOSKHUB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MPLBACKEND", "agg")
    if source.name in NEEDS:
        for name, value in request.getfixturevalue(NEEDS[source.name]).items():
            monkeypatch.setenv(name, value)

    notebook = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(work_dir)}},
    )
    client.execute()

    assert error_outputs(notebook) == []
    expected = EXPECTED_TEXT.get(source.name)
    if expected:
        assert any(expected in text for text in output_texts(notebook))
