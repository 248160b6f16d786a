"""case programme: a case is on one programme's pathway (nim, fdac); cases opened before
programmes existed were all NIM's

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 14:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('programme', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default='nim'))
        batch_op.create_index(batch_op.f('ix_nim_case_programme'), ['programme'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nim_case_programme'))
        batch_op.drop_column('programme')
