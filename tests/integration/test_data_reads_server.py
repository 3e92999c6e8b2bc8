"""``GET kioskhub/data-reads`` through a real ``jupyter server`` with the extension enabled.

A notebook's session starts a kernel through the server (as JupyterLab does); code runs
in it over the kernel's own connection file; the endpoint then names the files it read
under a stand-in data mount, with their sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jupyter_client import BlockingKernelClient

from tests.support.jupyter_server import start_jupyter_server, stop_jupyter_server

pytestmark = pytest.mark.integration

ENABLE = "--ServerApp.jpserver_extensions=kioskhub.extensions.data_reads_server=True"
EMPTY_NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


class Server:
    """A ``jupyter server`` with the extension, its runtime folder and data mounts known."""

    def __init__(self, folder: Path, mounts: list[dict]) -> None:
        self.root = folder / "root"
        self.root.mkdir()
        self.runtime = folder / "runtime"
        env = {
            **os.environ,
            "KIOSKHUB_DATA_MOUNTS": json.dumps(mounts),
            "JUPYTER_CONFIG_DIR": str(folder / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.runtime),
            "IPYTHONDIR": str(folder / "ipython"),
        }
        self.jupyter = start_jupyter_server(self.root, folder / "server.log", env, [ENABLE])
        self.api = self.jupyter.api

    def run(self, kernel_id: str, code: str) -> None:
        """Run ``code`` in a kernel of the server, over the kernel's connection file."""
        connection_file = str(self.runtime / f"kernel-{kernel_id}.json")
        client = BlockingKernelClient(connection_file=connection_file)
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            reply = client.execute_interactive(code, timeout=60)
        finally:
            client.stop_channels()
        assert reply["content"]["status"] == "ok", reply["content"]

    def stop(self) -> None:
        stop_jupyter_server(self.jupyter)


def test_the_endpoint_names_what_the_notebook_read_with_checksums(tmp_path):
    data = tmp_path / "mount"
    data.mkdir()
    (data / "run1.csv").write_text("a,b\n1,2\n")
    (data / "later.txt").write_text("changes after the read")
    (tmp_path / "elsewhere.txt").write_text("not data")
    mounts = [{"name": "beamtime", "paths": [str(data)]}]
    server = Server(tmp_path, mounts)
    try:
        (server.root / "analysis.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))
        (server.root / "idle.ipynb").write_text(json.dumps(EMPTY_NOTEBOOK))

        unknown = server.api("/kioskhub/data-reads?path=idle.ipynb")
        assert unknown.status_code == 404
        assert "has no running kernel: run the notebook first" in unknown.json()["message"]
        assert server.api("/kioskhub/data-reads").status_code == 400
        assert server.api("/kioskhub/data-reads?path=x", token="wrong").status_code == 403

        session = server.api(
            "/api/sessions",
            "POST",
            json={"path": "analysis.ipynb", "type": "notebook", "kernel": {"name": "python3"}},
        ).json()
        kernel_id = session["kernel"]["id"]
        server.run(
            kernel_id,
            f"open({str(data / 'run1.csv')!r}).read(); open({str(data / 'later.txt')!r}).read();"
            f"open({str(tmp_path / 'elsewhere.txt')!r}).read()",
        )
        (data / "later.txt").write_text("changed after the read, longer")

        reply = server.api("/kioskhub/data-reads?path=/analysis.ipynb")
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        run1 = (data / "run1.csv").stat()
        assert answer["notebook"] == "analysis.ipynb"
        assert answer["kernel"]["id"] == kernel_id and answer["kernel"]["name"] == "python3"
        assert answer["mounts"] == mounts
        files = {f["path"]: f for f in answer["files"]}
        assert sorted(files) == [str(data / "later.txt"), str(data / "run1.csv")]
        assert files[str(data / "run1.csv")] == {
            "path": str(data / "run1.csv"),
            "mount": "beamtime",
            "relative_path": "run1.csv",
            "size": run1.st_size,
            "mtime": datetime.fromtimestamp(run1.st_mtime_ns / 1e9, UTC).isoformat(),
            "sha256": hashlib.sha256(b"a,b\n1,2\n").hexdigest(),
        }
        later = files[str(data / "later.txt")]
        assert later["sha256"] is None
        assert later["checksum_skipped"].startswith("changed since the kernel read it")

        server.api(f"/api/sessions/{session['id']}", "DELETE")
        gone = server.api("/kioskhub/data-reads?path=analysis.ipynb")
        assert gone.status_code == 404
        assert not list(server.runtime.glob("*.data-reads.json"))
    finally:
        server.stop()
