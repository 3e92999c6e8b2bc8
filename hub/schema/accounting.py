"""The ``accounting:`` section of the site config: usage records and their APEL export.

Every server is recorded while it runs and when it ends (``spawner/usage_store.py``);
``kioskhub usage`` reports the records, and ``kioskhub usage --format apel`` writes APEL
cloud and accelerator messages into the outgoing directory that APEL's ``ssmsend`` reads.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from .paths import ConfigPath
from .section import Section


class AccountingSettings(Section):
    enabled: bool = Field(
        True, description="Record every server's usage (wall time, CPU seconds, memory, GPUs)."
    )
    update_interval: int = Field(
        60,
        ge=5,
        le=3600,
        description="Seconds between updates of a running server's record (CPU seconds, "
        "memory peak, last seen).",
    )
    site_name: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="The site's name in APEL records (SiteName, as registered in GOCDB); "
        "required for --format apel.",
    )
    cloud_type: str = Field(
        "KioskHub", min_length=1, description="CloudType of APEL cloud records."
    )
    cloud_compute_service: str = Field(
        "", description="CloudComputeService of APEL records; empty means the hub's URL host."
    )
    fqan: str = Field(
        "",
        description="FQAN (VO) stated in APEL records, e.g. /vo.example.org; empty means none "
        "for cloud records and the site name for accelerator records.",
    )
    apel_outgoing: ConfigPath | None = Field(
        None,
        description="The dirq directory that ssmsend sends from; empty means "
        "<hub.state_dir>/apel/outgoing.",
    )
    gpu_model: str = Field(
        "", description="Model of the site's GPUs in APEL accelerator records, e.g. NVIDIA H200."
    )


def usage_database(state_dir: Path) -> Path:
    """Where the usage records are kept: a root-only SQLite file in the state folder."""
    return state_dir / "usage.sqlite"


def apel_outgoing(settings: AccountingSettings, state_dir: Path) -> Path:
    return settings.apel_outgoing or state_dir / "apel" / "outgoing"
