"""orchestration change outcome: what the sync service did for a change (runs started,
resumed, cancelled, and any warning), read back by the CLI command that made the change

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 13:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('orchestration_change', schema=None) as batch_op:
        batch_op.add_column(sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orchestration_change', schema=None) as batch_op:
        batch_op.drop_column('outcome')
