"""The pure decisions of "Open in my server": same build or not and what the page says, the
reader's server (start, reuse, another environment), the spawn URL with its options as the
spawner reads them, and the names a copy may write."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from kioskhub.extensions.gallery_fetch_plan import (
    VersionFile,
    copy_folders,
    lab_url,
    version_files,
    version_number,
)
from kioskhub.extensions.gallery_publish_body import PublishError
from kioskhub.hub.gallery.reproduce import (
    BUSY,
    GONE,
    OTHER,
    REBUILT,
    REUSE,
    SAME,
    START,
    build_check,
    fetch_url,
    server_decision,
    spawn_url,
)
from kioskhub.spawner.spawn_form import options_from_form

OLD, NEW = "sha256:" + "a" * 64, "sha256:" + "b" * 64
BUILT = {
    "environment": "ada.fit", "profile": "small", "source": "catalog", "kind": "image",
    "image": "localhost/ada-fit:1", "digest": OLD, "commit": "c0ffee1", "repository": "fit.git",
}  # fmt: skip


def test_the_same_digest_is_the_same_build():
    check = build_check(BUILT, dict(BUILT))
    assert (check.status, check.can_open) == (SAME, True)
    assert check.message == f"You get the same build of 'ada.fit' ({OLD})."


def test_a_rebuilt_environment_is_said_plainly_with_both_digests():
    check = build_check(BUILT, {**BUILT, "digest": NEW, "commit": "beef"})
    assert (check.status, check.can_open, check.builder_link) == (REBUILT, True, True)
    assert check.message == (
        f"The environment 'ada.fit' was rebuilt since this version: you get {NEW}, this "
        f"version used {OLD}. To get the same build, rebuild it from commit c0ffee1 on the "
        "Environments page."
    )


def test_a_venv_is_compared_by_its_content_hash():
    pinned = {"environment": "v", "source": "catalog", "kind": "venv", "content_hash": "h1"}
    assert build_check(pinned, {**pinned, "content_hash": "h1"}).status == SAME
    changed = build_check(pinned, {**pinned, "content_hash": "h2"})
    assert changed.status == REBUILT and "you get h2, this version used h1" in changed.message


def test_a_site_environment_is_compared_by_its_image_or_folder():
    pinned = {"environment": "default", "source": "site config", "kind": "venv", "path": None}
    assert build_check(pinned, dict(pinned)).message == "You get the same build of 'default'."
    moved = build_check(pinned, {**pinned, "path": "/opt/new-venv"})
    assert moved.status == REBUILT
    assert "you get /opt/new-venv, this version used KioskHub's own environment" in moved.message


def test_a_gone_environment_names_the_commit_to_rebuild_and_cannot_be_opened():
    check = build_check(BUILT, {"environment": "ada.fit", "source": "unknown"})
    assert (check.status, check.can_open, check.builder_link) == (GONE, False, True)
    assert check.message == (
        "The environment 'ada.fit' is gone: rebuild it from commit c0ffee1 of fit.git on the "
        "Environments page, then open this version again."
    )
    site = build_check({"environment": "old"}, {"environment": "old", "source": "unknown"})
    assert site.status == GONE and not site.builder_link
    assert "no longer offered at this site" in site.message


@pytest.mark.parametrize(
    ("server", "running", "action"),
    [
        (None, None, START),
        ({"ready": True, "pending": None}, "ada.fit", REUSE),
        ({"ready": True, "pending": None}, "default", OTHER),
        ({"ready": False, "pending": "spawn"}, "ada.fit", BUSY),
        ({"ready": True, "pending": "stop"}, "ada.fit", BUSY),
    ],
)
def test_the_readers_server_is_started_reused_or_left_alone(server, running, action):
    assert server_decision(server, running, "ada.fit").action == action


def test_another_environment_is_never_stopped_silently():
    decision = server_decision({"ready": True}, "default", "ada.fit")
    assert decision.message == (
        "Your server runs the environment 'default'; this version needs 'ada.fit'. Stop your "
        "server on the hub's home page (nothing is stopped for you: save your work first), "
        "then open this version again."
    )


def test_the_spawn_url_carries_the_options_as_the_spawner_reads_them():
    fetch = fetch_url("/", "bob", 3, 2)
    assert fetch == "/user/bob/kioskhub/gallery/fetch?entry=3&version=2"
    url = spawn_url("/", "bob", "ada.fit", "small", fetch)
    assert url == (
        "/hub/spawn/bob?opt-environment=ada.fit&opt-profile=small&next=%2Fuser%2Fbob%2F"
        "kioskhub%2Fgallery%2Ffetch%3Fentry%3D3%26version%3D2"
    )
    query = parse_qs(urlsplit(url).query)
    assert query.pop("next") == [fetch]
    # JupyterHub strips "opt-" and hands the rest to the spawner's options_from_query.
    options = {key.removeprefix("opt-"): values for key, values in query.items()}
    assert options_from_form(options) == {"environment": "ada.fit", "profile": "small"}
    assert "opt-profile" not in spawn_url("/", "b", "default", None, fetch)
    assert spawn_url("/", "a/../x", "e", None, "/n").startswith("/hub/spawn/a%2F..%2Fx?")


def manifest(*names: str) -> dict:
    line = {"size": 1, "sha256": "0" * 64}
    return {"manifest": {"notebook": line, "files": [{"name": n, **line} for n in names]}}


def test_a_version_copies_its_notebook_and_files_from_their_gallery_urls():
    files = version_files(manifest("data/points.csv", "a b.txt"), 7, 2)
    assert files == [
        VersionFile("notebook.ipynb", "api/entries/7/versions/2/notebook", 1, "0" * 64),
        VersionFile("data/points.csv", "api/entries/7/versions/2/files/data/points.csv", 1,
                    "0" * 64),
        VersionFile("a b.txt", "api/entries/7/versions/2/files/a%20b.txt", 1, "0" * 64),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "name", ["../../.bashrc", "/etc/profile", "a/../../b", ".ssh/authorized_keys", "a\\b", "x\n"]
)
def test_a_name_that_is_not_a_plain_relative_path_is_refused_before_anything(name):
    with pytest.raises(PublishError) as refused:
        version_files(manifest("ok.txt", name), 1, 1)
    assert refused.value.status == 400
    assert str(refused.value).startswith("Not copied: the version lists a file named")
    assert str(refused.value).endswith("Nothing was written.")


def test_a_manifest_without_checksums_is_refused():
    with pytest.raises(PublishError, match="without a size and sha256"):
        version_files({"manifest": {"notebook": {"size": 1, "sha256": "x"}}}, 1, 1)


def test_copies_never_overwrite_and_open_in_jupyterlab():
    assert copy_folders(4, 1)[:3] == ["gallery/4/v1", "gallery/4/v1-2", "gallery/4/v1-3"]
    assert lab_url("/user/bob/", "gallery/4/v1-2") == (
        "/user/bob/lab/tree/gallery/4/v1-2/notebook.ipynb"
    )
    assert version_number("12", "entry") == 12
    for bad in ("0", "-1", "1e3", "", None, "../1"):
        with pytest.raises(PublishError, match="positive whole number"):
            version_number(bad, "entry")
