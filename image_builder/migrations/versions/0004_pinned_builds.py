"""Pinned builds: a commit already built for an environment, built again beside it.

A gallery version pinned to an environment whose current build has moved on is opened in a
build of the pinned commit. Such a build is a row of ``builds`` marked ``pinned``: it never
becomes the environment's artifact. ``pin_grants`` says which users asked (through the
gallery) to launch it; only they are offered it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(
            sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "pin_grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "build_id",
            sa.Integer(),
            sa.ForeignKey("builds.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("username", sa.String(64), nullable=False, index=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("build_id", "username", name="uq_pin_grants_build_user"),
    )


def downgrade() -> None:
    op.drop_table("pin_grants")
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("pinned")
