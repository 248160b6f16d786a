"""each child's own orders and timetable (issue 27): the case keeps the interim orders (and
orders after the disposal, such as an adoption order) made for each child; an extension of
the court's timetable may be of one child's own application. Stored cases have none (NULL: no
such orders; an extension with no child is the family's, as every stored one is)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 08:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('orders', sa.JSON(), nullable=True))
    with op.batch_alter_table('court_extension', schema=None) as batch_op:
        batch_op.add_column(sa.Column('child', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('court_extension', schema=None) as batch_op:
        batch_op.drop_column('child')
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.drop_column('orders')
