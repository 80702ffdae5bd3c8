"""client id_token_signed_response_alg

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

``clients.signed_response_alg``: the client's ``id_token_signed_response_alg`` (ES256, RS256 or
PS256), ES256 for every existing client. The table keeps its row-level security policy
(``tenant_isolation`` from 0002) unchanged; the RSA keys live in ``app_keys`` under the
purpose ``id_token_sig_rsa`` (no schema change there).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(
            sa.Column("signed_response_alg", sa.String(length=8), nullable=False,
                      server_default="ES256"))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("signed_response_alg")
