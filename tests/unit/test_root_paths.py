"""The root-safe path module against symlinks at each component, wrong owners and races.

Real folders and real chowns (the tests run as root, as the hub does).
"""

from __future__ import annotations

import os
import stat

import pytest

from kioskhub.spawner import root_paths
from kioskhub.spawner.root_paths import Owner, UnsafePathError

NOBODY = Owner(65534, 65534)


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch):
    """Each test runs with openat2 and with the O_NOFOLLOW walk that stands in for it."""
    if request.param == "walk":
        monkeypatch.setattr(root_paths, "_openat2_works", False)
    else:
        monkeypatch.setattr(root_paths, "_openat2_works", None)
    return request.param


@pytest.fixture
def tree(tmp_path):
    """trusted/a/b/c, and a root-owned victim folder outside it."""
    (tmp_path / "trusted" / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "precious").write_text("root's")
    return tmp_path


def opened(folder) -> int:
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY)


def test_opens_a_plain_path_beneath(tree, resolver):
    base = opened(tree / "trusted")
    fd = root_paths.open_beneath(base, "a/b/c")
    assert os.fstat(fd).st_ino == (tree / "trusted/a/b/c").stat().st_ino
    os.close(fd)
    os.close(base)


@pytest.mark.parametrize("component", ["a", "a/b", "a/b/c"])
def test_a_symlink_at_any_component_is_refused(tree, resolver, component):
    link = tree / "trusted" / component
    link.rename(link.with_name(link.name + "-moved"))
    link.symlink_to(tree / "victim")
    base = opened(tree / "trusted")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        root_paths.open_beneath(base, "a/b/c", os.O_RDONLY | os.O_DIRECTORY)
    os.close(base)


@pytest.mark.parametrize("path", ["../victim", "a/../../victim", "/etc", ""])
def test_paths_that_leave_the_folder_are_refused(tree, resolver, path):
    base = opened(tree / "trusted")
    with pytest.raises(UnsafePathError, match="not a plain relative path"):
        root_paths.open_beneath(base, path)
    os.close(base)


def test_hand_over_creates_the_folder_for_its_owner(tree, resolver):
    base = opened(tree / "trusted")
    root_paths.hand_over_folder(base, "ada", NOBODY)
    info = (tree / "trusted" / "ada").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (65534, 65534, 0o700)
    root_paths.hand_over_folder(base, "ada", NOBODY)
    os.close(base)


def test_hand_over_refuses_a_symlink_and_leaves_its_target_alone(tree, resolver):
    (tree / "trusted" / "ada").symlink_to(tree / "victim")
    base = opened(tree / "trusted")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        root_paths.hand_over_folder(base, "ada", NOBODY)
    os.close(base)
    assert (tree / "victim").stat().st_uid == 0
    assert stat.S_IMODE((tree / "victim").stat().st_mode) != 0o700


def test_hand_over_refuses_another_accounts_folder(tree, resolver):
    os.chown(tree / "trusted" / "a", 4242, 4242)
    base = opened(tree / "trusted")
    with pytest.raises(UnsafePathError, match="belongs to uid 4242, not to uid 65534"):
        root_paths.hand_over_folder(base, "a", NOBODY)
    os.close(base)
    assert (tree / "trusted" / "a").stat().st_uid == 4242


def test_hand_over_is_not_fooled_by_a_swap_after_mkdir(tree, resolver, monkeypatch):
    """An attacker who replaces the new folder by a symlink right after mkdir gains nothing."""
    real_mkdir = os.mkdir

    def mkdir_then_swap(name, mode=0o777, *, dir_fd=None):
        real_mkdir(name, mode, dir_fd=dir_fd)
        os.rmdir(name, dir_fd=dir_fd)
        os.symlink(tree / "victim", name, dir_fd=dir_fd)

    monkeypatch.setattr(root_paths.os, "mkdir", mkdir_then_swap)
    base = opened(tree / "trusted")
    with pytest.raises(UnsafePathError):
        root_paths.hand_over_folder(base, "ada", NOBODY)
    os.close(base)
    assert (tree / "victim").stat().st_uid == 0
    assert (tree / "victim" / "precious").stat().st_uid == 0


def test_check_owner_names_the_owner(tree):
    fd = opened(tree / "victim")
    with pytest.raises(UnsafePathError, match="the home belongs to uid 0, not to uid 65534"):
        root_paths.check_owner(fd, 65534, "the home")
    assert root_paths.check_owner(fd, 0, "the home").st_uid == 0
    os.close(fd)


def test_a_trusted_folder_must_be_roots_alone(tree):
    folder = tree / "trusted"
    os.chmod(folder, 0o775)
    with pytest.raises(UnsafePathError, match=f"run `chown root: {folder} && chmod go-w"):
        root_paths.open_trusted_folder(str(folder))
    os.chmod(folder, 0o755)
    os.chown(folder, 4242, 4242)
    with pytest.raises(UnsafePathError, match="it is uid 4242"):
        root_paths.open_trusted_folder(str(folder))
    os.chown(folder, 0, 0)
    os.close(root_paths.open_trusted_folder(str(folder)))


def test_describe_drops_the_errno():
    assert root_paths.describe(FileNotFoundError(2, "No such file or directory", "/x")) == (
        "No such file or directory: /x"
    )
    assert root_paths.describe(UnsafePathError(1, "refused")) == "refused"
