"""clients.require_par: a client may be required to push its authorization requests

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

RFC 9126 §5 ``require_pushed_authorization_requests`` per client; existing clients keep
sending plain authorization requests (``false``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("require_par", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("require_par")
