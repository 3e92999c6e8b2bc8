"""Site environments are owned by '@site', which no hub username can be.

Until now the site config's rows had the owner 'site', the same string a hub user named
'site' would own their environments under, and that user got site rights over them. Every
row owned by 'site' moves to '@site'. Rows that a user named 'site' registered (the name is
now reserved, so that user can no longer sign in) become site rows too, and the service's
sync at its next start removes those that are not in the site config.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

OLD_SITE_OWNER = "site"
SITE_OWNER = "@site"

environments = sa.table("environments", sa.column("owner", sa.String))


def upgrade() -> None:
    op.execute(
        environments.update().where(environments.c.owner == OLD_SITE_OWNER).values(owner=SITE_OWNER)
    )


def downgrade() -> None:
    op.execute(
        environments.update().where(environments.c.owner == SITE_OWNER).values(owner=OLD_SITE_OWNER)
    )
