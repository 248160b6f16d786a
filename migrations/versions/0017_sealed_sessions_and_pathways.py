"""sealed sessions and pathway versions: a keyed MAC (under the secret key, outside the
database) over a login session's holder, expiry and revocation, and over an installed pathway's
profile, version and hash, so the database owner cannot re-point, extend or revive a session
or edit an installed pathway (issue 28). Sessions from before have no seal and are refused
(their holders log in again); pathway versions from before are checked against their keyed
install audit row.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 05:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ('login_session', 'pathway_version'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('seal', sqlmodel.sql.sqltypes.AutoString(),
                                          nullable=True))


def downgrade() -> None:
    for table in ('login_session', 'pathway_version'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('seal')
