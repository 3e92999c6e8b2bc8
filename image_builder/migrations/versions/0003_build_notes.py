"""Builds and environments keep notes on how they were built.

A venv built with another Python than runtime.txt asked for (the site's ``nearest`` policy)
says so on the environment's page: the note is kept with the build and with the environment
whose artifact it made. Earlier rows have none.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("environments", "builds"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("notes", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in ("environments", "builds"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("notes")
