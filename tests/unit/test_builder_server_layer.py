"""The server layer: its key, the clone of its files into a new venv, and the intact check."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kioskhub.image_builder.build_sandbox import BuildAccount
from kioskhub.image_builder.server_layer import (
    LAYER_MARKER,
    clone_layer,
    installed_distributions,
    layer_intact,
    layer_key,
    make_read_only,
)

SITE = "lib/python3.11/site-packages"


def make_layer(folder: Path) -> Path:
    """A small venv-shaped layer: a package, its dist-info, a script, links, a marker."""
    layer = folder / "layer"
    (layer / SITE / "tornado").mkdir(parents=True)
    (layer / SITE / "tornado" / "__init__.py").write_text("version = '6.6'\n")
    (layer / SITE / "tornado-6.6.dist-info").mkdir()
    (layer / SITE / "jupyterlab-4.6.6.dist-info").mkdir()
    (layer / "bin").mkdir()
    script = layer / "bin" / "jupyterhub-singleuser"
    script.write_text(f"#!{layer}/bin/python\nimport sys\n")
    script.chmod(0o755)
    (layer / "bin" / "python").symlink_to("/usr/bin/python3")
    (layer / "bin" / "activate").write_text(f"VIRTUAL_ENV={layer}\n")
    (layer / "lib64").symlink_to("lib")
    (layer / "share" / "jupyter" / "lab").mkdir(parents=True)
    (layer / "share" / "jupyter" / "lab" / "page.html").write_text("<html></html>\n")
    (layer / LAYER_MARKER).write_text("{}\n")
    return layer


def make_new_venv(folder: Path) -> Path:
    """What the venv tool makes before the clone: its own python link and activate script."""
    target = folder / "target"
    (target / "bin").mkdir(parents=True)
    (target / "bin" / "python").symlink_to("/usr/bin/python3")
    (target / "bin" / "activate").write_text(f"VIRTUAL_ENV={target}\n")
    (target / "lib64").symlink_to("lib")
    return target


def test_the_layer_key_follows_python_packages_and_recipe():
    base = {
        "python_version": "3.11.2",
        "server_packages": ("jupyterlab==4.6.6",),
        "builder_version": "2",
    }
    assert layer_key(**base) == layer_key(**base)
    assert len(layer_key(**base)) == 24
    for change in (
        {"python_version": "3.12.1"},
        {"server_packages": ("jupyterlab==4.6.7",)},
        {"builder_version": "3"},
    ):
        assert layer_key(**(base | change)) != layer_key(**base)


def test_a_clone_links_the_files_and_rewrites_the_scripts(tmp_path):
    layer = make_layer(tmp_path)
    target = make_new_venv(tmp_path)
    owner = BuildAccount(name="builder")

    clone_layer(layer, target, owner)
    distributions = installed_distributions(layer)

    assert distributions == {"tornado-6.6", "jupyterlab-4.6.6"}
    module = target / SITE / "tornado" / "__init__.py"
    assert module.read_text() == "version = '6.6'\n"
    assert os.path.samefile(module, layer / SITE / "tornado" / "__init__.py")
    assert os.path.samefile(
        target / "share/jupyter/lab/page.html", layer / "share/jupyter/lab/page.html"
    )
    script = target / "bin" / "jupyterhub-singleuser"
    assert script.read_text() == f"#!{target}/bin/python\nimport sys\n"
    assert not os.path.samefile(script, layer / "bin" / "jupyterhub-singleuser")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    # What the venv tool made stays as it was; the layer's marker is not copied.
    assert (target / "bin" / "activate").read_text() == f"VIRTUAL_ENV={target}\n"
    assert os.readlink(target / "bin" / "python") == "/usr/bin/python3"
    assert not (target / LAYER_MARKER).exists()
    assert installed_distributions(target) == distributions


def test_a_read_only_layer_stays_unchanged_when_its_clone_changes(tmp_path):
    layer = make_layer(tmp_path)
    make_read_only(layer)
    target = make_new_venv(tmp_path)
    clone_layer(layer, target, BuildAccount(name="builder"))
    shared = target / SITE / "tornado" / "__init__.py"

    assert not stat.S_IMODE(shared.stat().st_mode) & 0o222
    # An install replaces a package by unlinking its files and writing new ones.
    shared.unlink()
    shared.write_text("version = '5.0'\n")
    (target / SITE / "tornado-6.6.dist-info").rmdir()
    (target / SITE / "tornado-5.0.dist-info").mkdir()

    assert (layer / SITE / "tornado" / "__init__.py").read_text() == "version = '6.6'\n"
    assert installed_distributions(layer) == {"tornado-6.6", "jupyterlab-4.6.6"}
    assert not layer_intact(installed_distributions(layer), installed_distributions(target))


def test_added_packages_leave_the_layer_intact():
    layer = {"tornado-6.6", "jupyterlab-4.6.6"}
    assert layer_intact(layer, layer | {"tomli_w-1.2.0"})
    assert not layer_intact(layer, {"tornado-6.5", "jupyterlab-4.6.6", "tomli_w-1.2.0"})
    assert not layer_intact(layer, {"jupyterlab-4.6.6"})
