"""court directions bind the work that produces a document (issue 27, part 5): the case keeps
its directions and a task the pathway's own date when a direction's is earlier; a pause can
concern one caregiver or child (part 6): the case keeps whose work is paused. Stored cases
have none of these (NULL: no directions, no one paused)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 05:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused_people', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('directions', sa.JSON(), nullable=True))
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pathway_due', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('pathway_due')
    with op.batch_alter_table('nim_case', schema=None) as batch_op:
        batch_op.drop_column('directions')
        batch_op.drop_column('paused_people')
