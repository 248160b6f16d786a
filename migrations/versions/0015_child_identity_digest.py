"""child identity digest: a keyed hash of a child's normalised names and date of birth, set when
a case opens, so a referral for a child already on an open case is found; cases opened before
have none (nothing is backfilled: their identity is sealed under their own keys)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 03:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('child', schema=None) as batch_op:
        batch_op.add_column(sa.Column('identity_digest', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=True))
        batch_op.create_index(batch_op.f('ix_child_identity_digest'), ['identity_digest'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('child', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_child_identity_digest'))
        batch_op.drop_column('identity_digest')
