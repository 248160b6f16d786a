"""stage run ids: the case keeps the id of the Prefect run of each stage, as tasks keep theirs,
so a sync reads its runs by id instead of filtering every run by tag

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 08:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stage_runs', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.drop_column('stage_runs')
