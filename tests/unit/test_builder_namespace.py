"""Which folders a build step sees again below its fresh temporary folders.

A bind mount skips the folders above its target, and root opens the path a build could have
swapped: only paths reached without a link, below folders the build may pass, come back.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kioskhub.image_builder import build_sandbox
from kioskhub.image_builder.build_namespace import open_exactly, outermost_below, reachable_by


def test_only_the_outermost_paths_below_a_temporary_folder_are_bound():
    paths = [
        "/tmp/build-1",
        "/tmp/build-1/cache",
        "/tmp/site/environments/",
        "/tmpfoo/x",
        "/srv/environments",
        "/tmp",
    ]
    assert outermost_below("/tmp", paths) == ["/tmp/build-1", "/tmp/site/environments"]


def test_a_path_behind_a_closed_folder_is_not_reachable(tmp_path):
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    os.chmod(closed, 0o700)
    stranger = os.geteuid() + 12345
    assert not reachable_by(str(closed / "inner"), str(tmp_path), stranger)
    assert reachable_by(str(closed / "inner"), str(tmp_path), os.geteuid())
    os.chmod(closed, 0o711)
    assert reachable_by(str(closed / "inner"), str(tmp_path), stranger)


def test_a_path_through_a_link_is_neither_reachable_nor_opened(tmp_path):
    real = tmp_path / "real"
    (real / "inner").mkdir(parents=True)
    (tmp_path / "swapped").symlink_to(real)
    swapped = str(tmp_path / "swapped" / "inner")
    assert not reachable_by(swapped, str(tmp_path), os.geteuid())
    assert open_exactly(swapped) is None
    assert open_exactly(str(tmp_path / "swapped")) is None
    assert open_exactly(str(tmp_path / "missing")) is None
    fd = open_exactly(str(real / "inner"))
    assert fd is not None
    os.close(fd)


def test_steps_still_see_kioskhub_s_own_venv_and_code():
    """A checkout under /tmp holds the venv (uv, the server packages) and the code every step
    runs from: they are bound back into the step's fresh /tmp."""
    code = Path(build_sandbox.__file__).resolve().parents[1]
    assert os.path.realpath(sys.prefix) in build_sandbox.KIOSKHUB_PATHS
    assert str(code) in build_sandbox.KIOSKHUB_PATHS
