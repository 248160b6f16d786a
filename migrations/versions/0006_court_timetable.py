"""court timetable: extensions as a series, the final order; the single override retired

An override recorded before this migration (a total number of weeks) becomes one extension
row granted on the issue date for the weeks beyond 26, its direction as the reason, so the
limit each case shows is unchanged.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 12:55:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'court_extension',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('granted_on', sa.Date(), nullable=False),
        sa.Column('weeks', sa.Integer(), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('recorded_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['nim_case.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('court_extension', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_court_extension_case_id'), ['case_id'], unique=False)
    conn = op.get_bind()
    conn.execute(sa.text(
        "INSERT INTO court_extension (case_id, granted_on, weeks, reason, recorded_by, "
        "recorded_at) SELECT c.id, a.value, c.court_override_weeks - 26, "
        "COALESCE(c.court_override_direction, 'court timetable override'), 'migration 0006', "
        "c.opened_at FROM nim_case c JOIN case_anchor a ON a.case_id = c.id "
        "AND a.name = 'proceedings_issued' WHERE c.court_override_weeks > 26"))
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('final_order_kind', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=True))
        batch_op.add_column(sa.Column('final_order_follows_recommendation', sa.Boolean(),
                                      nullable=True))
        batch_op.drop_column('court_override_weeks')
        batch_op.drop_column('court_override_direction')


def downgrade() -> None:
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('court_override_direction',
                                      sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('court_override_weeks', sa.Integer(), nullable=True))
        batch_op.drop_column('final_order_follows_recommendation')
        batch_op.drop_column('final_order_kind')
    with op.batch_alter_table('court_extension', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_court_extension_case_id'))
    op.drop_table('court_extension')
