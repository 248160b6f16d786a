"""orchestration journal: cases whose Prefect runs must catch up, applied by change

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 07:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('orchestration_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_ref', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('claimed_until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('claim_token', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('applied_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('orchestration_change', schema=None) as batch_op:
        batch_op.create_index('ix_orchestration_change_pending', ['applied_at', 'id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_orchestration_change_case_ref'), ['case_ref'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('orchestration_change')
