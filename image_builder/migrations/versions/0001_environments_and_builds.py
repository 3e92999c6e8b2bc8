"""Environments and their builds.

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("repo_url", sa.String(2048), nullable=True),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("subdir", sa.String(1024), nullable=False),
        sa.Column("builder", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("visibility", sa.String(200), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("venv_path", sa.String(4096), nullable=True),
        sa.Column("image_ref", sa.String(1024), nullable=True),
        sa.Column("image_digest", sa.String(128), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("built_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("owner", "name", name="uq_environments_owner_name"),
    )
    op.create_index("ix_environments_owner", "environments", ["owner"])
    op.create_table(
        "builds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "environment_id",
            sa.Integer(),
            sa.ForeignKey("environments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("builder", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(255), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("progress", sa.Integer(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("venv_path", sa.String(4096), nullable=True),
        sa.Column("image_ref", sa.String(1024), nullable=True),
        sa.Column("image_digest", sa.String(128), nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("external_url", sa.String(2048), nullable=True),
        sa.Column("builder_state", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_builds_environment_id", "builds", ["environment_id"])


def downgrade() -> None:
    op.drop_index("ix_builds_environment_id", table_name="builds")
    op.drop_table("builds")
    op.drop_index("ix_environments_owner", table_name="environments")
    op.drop_table("environments")
