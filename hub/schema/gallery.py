"""The ``gallery:`` section of the site config: the review gallery (journey J4).

Researchers publish a notebook from JupyterLab, pinned to its environment, commit and the
data it read; reviewers read it rendered, discuss it cell by cell and reproduce it
(``hub/gallery/``).
"""

from __future__ import annotations

from pydantic import Field

from .section import Section

MIB = 2**20
SEAT_PREFIX = "rv-"
"""Hub usernames of temporary reviewer seats (``rv-<10 hex digits>``): made by the hub's
seat page alone, never by a sign-in (``site.RESERVED_PREFIXES``)."""


class ReviewerSeats(Section):
    enabled: bool = Field(
        False,
        description='Offer "Open in a temporary seat" to reviewers who came by a reviewer '
        "link without a lab account: a temporary hub user, signed in by the link alone, whose "
        "server runs the version's pinned environment with its files. Off: the reviewer's "
        "page says to ask the author for an account or download the RO-Crate.",
    )
    hours: int = Field(
        24,
        ge=1,
        le=720,
        description="How long a seat lasts, in hours (never past its reviewer link's expiry); "
        "then its server stops and its user, home and system account are removed.",
    )
    per_link: int = Field(
        5, ge=1, le=1000, description="Most seats one reviewer link has at a time."
    )
    site_limit: int = Field(
        20, ge=1, le=10000, description="Most seats the whole site has at a time."
    )


class GallerySettings(Section):
    enabled: bool = Field(False, description="Offer the review gallery: publishing, reviewing.")
    max_version_bytes: int = Field(
        100 * MIB,
        ge=MIB,
        le=10 * 1024 * MIB,
        description="Largest version one may publish: the notebook and the files beside it, "
        "in bytes.",
    )
    max_notebook_bytes: int = Field(
        20 * MIB,
        ge=64 * 1024,
        le=1024 * MIB,
        description="Largest notebook file one may publish, in bytes (within "
        "``max_version_bytes``).",
    )
    reviewer_link_max_days: int = Field(
        90, ge=1, le=3650, description="Longest validity of a reviewer link, in days."
    )
    anonymous_review: bool = Field(
        True,
        description="Authors may hide their name from reviewers who come by a reviewer link.",
    )
    reviewer_seats: ReviewerSeats = Field(
        ReviewerSeats(),
        description="Temporary seats for reviewers without a lab account (off by default).",
    )
    port: int = Field(
        8092, ge=1, le=65535, description="Port on 127.0.0.1 of the gallery service."
    )


GALLERY_URL_ENV = "KIOSKHUB_GALLERY_URL"
GALLERY_MAX_BYTES_ENV = "KIOSKHUB_GALLERY_MAX_BYTES"


def gallery_env(gallery: GallerySettings) -> dict[str, str]:
    """What a server is told about the gallery (empty when it is off): where its API is
    reached from the server (the service itself on loopback, as the hub's API is), for
    publishing from JupyterLab, and the largest version it takes."""
    if not gallery.enabled:
        return {}
    return {
        GALLERY_URL_ENV: f"http://127.0.0.1:{gallery.port}/services/gallery/",
        GALLERY_MAX_BYTES_ENV: str(gallery.max_version_bytes),
    }
