"""families and exits: several children per case, caregivers linked to children, per-child
work and placements, early exits, pauses, a link to a previous episode

Existing cases become one-child families (child-1), their caregivers caring for every child.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 13:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = "id, case_id, given_name, family_name, date_of_birth, address, erased_at"


def upgrade() -> None:
    # child: one row per child of the case (the unique case_id goes), keyed child-1, child-2
    op.create_table(
        'child_v2',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('given_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('family_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('date_of_birth', sa.Date(), nullable=True),
        sa.Column('address', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('erased_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('removed_on', sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['nim_case.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('case_id', 'key'),
    )
    op.execute(f"INSERT INTO child_v2 ({COLUMNS}, key) SELECT {COLUMNS}, 'child-1' FROM child")
    op.drop_table('child')
    op.rename_table('child_v2', 'child')
    op.create_index('ix_child_case_id', 'child', ['case_id'])
    if op.get_bind().dialect.name == "postgresql":  # the copied ids: the sequence goes on after
        op.execute("SELECT setval(pg_get_serial_sequence('child', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM child), 0) + 1, false)")
    with op.batch_alter_table('caregiver', schema=None) as batch_op:
        batch_op.add_column(sa.Column('children', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('active', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('child', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table('placement', schema=None) as batch_op:
        batch_op.add_column(sa.Column('child', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default='child-1'))
    op.create_table(
        'contact_arrangement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('child', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('caregiver', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('per_week', sa.Float(), nullable=False),
        sa.Column('supervised', sa.Boolean(), nullable=False),
        sa.Column('start', sa.Date(), nullable=False),
        sa.Column('end', sa.Date(), nullable=True),
        sa.Column('recorded_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['nim_case.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_contact_arrangement_case_id', 'contact_arrangement', ['case_id'])
    op.create_table(
        'treatment_session',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('held_on', sa.Date(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('caregiver', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('child', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column('attended', sa.Boolean(), nullable=False),
        sa.Column('recorded_by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['nim_case.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_treatment_session_case_id', 'treatment_session', ['case_id'])
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('exit_reason', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=True))
        batch_op.add_column(sa.Column('paused_since', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('pauses', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('previous_episode', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=True))
        batch_op.add_column(sa.Column('child_orders', sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_table('treatment_session')
    op.drop_table('contact_arrangement')
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        for column in ('child_orders', 'previous_episode', 'pauses', 'paused_since',
                       'exit_reason'):
            batch_op.drop_column(column)
    with op.batch_alter_table('placement', schema=None) as batch_op:
        batch_op.drop_column('child')
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('child')
    with op.batch_alter_table('caregiver', schema=None) as batch_op:
        batch_op.drop_column('active')
        batch_op.drop_column('children')
    op.execute("DELETE FROM child WHERE key <> 'child-1'")
    with op.batch_alter_table('child', schema=None) as batch_op:
        batch_op.drop_column('key')
