"""sealed identity: a child's date of birth is stored as ciphertext text (store/sealing.py)

Names, addresses and free text were text columns already and are sealed by the application
from now on; values written before are read as they are and sealed when next written.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 07:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('child', schema=None) as batch_op:
        batch_op.alter_column('date_of_birth', existing_type=sa.Date(),
                              type_=sqlmodel.sql.sqltypes.AutoString(), existing_nullable=True,
                              postgresql_using='date_of_birth::text')


def downgrade() -> None:
    # code before 0009 cannot read a sealed date of birth (opening it needs the site's key,
    # which migrations never hold): going back keeps dates written in clear and, on
    # PostgreSQL, empties sealed ones (SQLite keeps the text in its date column)
    with op.batch_alter_table('child', schema=None) as batch_op:
        batch_op.alter_column('date_of_birth', existing_type=sqlmodel.sql.sqltypes.AutoString(),
                              type_=sa.Date(), existing_nullable=True,
                              postgresql_using="CASE WHEN left(date_of_birth, 5) = 'nim1:' THEN NULL "
                                               "ELSE date_of_birth::date END")
