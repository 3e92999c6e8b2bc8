"""What a version page says about a pinned rebuild: building, the same build, a differing
one, or a failure (``reproduce_pinned.rebuild_view``), and when "Open" rebuilds at all."""

from __future__ import annotations

from kioskhub.hub.gallery.reproduce import REBUILT, SAME, BuildCheck
from kioskhub.hub.gallery.reproduce_pinned import can_rebuild, rebuild_view
from tests.unit.test_hub_settings import small_site

COMMIT = "a" * 40
PINNED = {"environment": "ada.tomli", "commit": COMMIT, "content_hash": "h1"}


def test_a_rebuild_under_way_says_so_and_refreshes():
    view = rebuild_view(PINNED, {"status": "building", "progress": 40, "phase": "Installing"})
    assert view.message == (
        f"The environment this version was pinned to is gone; rebuilding it from commit {COMMIT} …"
    )
    assert (view.state, view.progress, view.phase, view.refresh) == (
        "building", 40, "Installing", True
    )  # fmt: skip


def test_a_ready_rebuild_is_the_same_build_or_says_how_it_differs():
    same = rebuild_view(PINNED, {"status": "ready", "content_hash": "h1", "spawn_name": "pin-h1"})
    assert same.state == "ready" and not same.refresh
    assert same.message.startswith(f"Rebuilt from commit {COMMIT}: the same build as pinned (h1)")
    differs = rebuild_view(PINNED, {"status": "ready", "content_hash": "h9"})
    assert differs.state == "differs"
    assert "the rebuild differs from the pinned build: it is h9, this version used h1" in (
        differs.message
    )


def test_a_failed_rebuild_says_why():
    view = rebuild_view(PINNED, {"status": "failed", "error": "no such package <b>x</b>"})
    assert view.state == "failed" and "failed: no such package <b>x</b>" in view.message


def test_open_rebuilds_only_a_rebuilt_environment_with_a_commit_where_the_site_builds(tmp_path):
    rebuilt, same = BuildCheck(REBUILT, ""), BuildCheck(SAME, "")
    building = small_site(tmp_path, builder={"enabled": True, "port": 8124})
    assert can_rebuild(building, PINNED, rebuilt)
    assert not can_rebuild(building, PINNED, same)
    assert not can_rebuild(building, {"environment": "default"}, rebuilt)
    assert not can_rebuild(small_site(tmp_path), PINNED, rebuilt)
