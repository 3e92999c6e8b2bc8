"""Whom KioskHub's GitLab account acts for: pure rules on a project as GitLab reports it.

KioskHub's bot account can read and build projects that the hub user asking may not. Without
the user's own GitLab token, the bot acts for a hub user only on projects anyone may read:
``visibility`` public or internal (as the API reports it, read again at each build, since a
project can be made private). With it (GitLab sign-in), a project is built when GitLab shows
it to that user with a role that reads its code (``user_access_refusal``), checked with the
user's token before anything runs. Job traces are copied into KioskHub's
build log only where GitLab shows them to anyone: a public project with public jobs
(``public_jobs``); otherwise the log says where to read them in GitLab.
"""

from __future__ import annotations

READABLE_BY_ANYONE = ("public", "internal")
REPORTER = 20
"""GitLab's lowest role that reads a private project's code (Guests do not)."""


def build_refusal(path: str, visibility: str) -> str | None:
    """Why KioskHub will not build ``path`` for a hub user, or None when it may."""
    if visibility in READABLE_BY_ANYONE:
        return None
    return (
        f"the GitLab project {path} is {visibility}: KioskHub builds only projects that "
        "every user may read (public or internal); make it internal or public in GitLab's "
        "Settings > General > Visibility, or build it in your own CI"
    )


def traces_readable_by_anyone(visibility: str, public_jobs: bool) -> bool:
    """Whether GitLab shows the project's job logs to anyone who may see the environment."""
    return visibility == "public" and public_jobs


def user_access_refusal(path: str, visibility: str | None, access_level: int) -> str | None:
    """Why the user whose token shows the project as ``visibility`` with ``access_level``
    (0: none; None visibility: GitLab did not show the project) may not build it, or None."""
    if visibility in READABLE_BY_ANYONE:
        return None
    if visibility is not None and access_level >= REPORTER:
        return None
    return (
        f"your GitLab account cannot read the code of the GitLab project {path}: ask one of "
        "its maintainers for the Reporter role or more, then register or rebuild it again "
        "(if you have access with another GitLab account, sign in to KioskHub with that one)"
    )
