"""identity: enrolled one-time-code secrets, lockout, CLI login sessions, the service identity,
installed pathway versions, per-case data keys (crypto-shredding of typed free text)

Pathway versions already in the store are marked installed (cases run on them). Practitioners
already registered have no second factor until an admin enrols them
(`nim-pathway practitioner enrol`); the first admin comes from `nim-pathway init`.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 02:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('case_key',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_ref', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('wrapped', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('destroyed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('case_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_key_case_ref'), ['case_ref'], unique=True)
    op.create_table('login_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('practitioner_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioner.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_session_practitioner_id'), ['practitioner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_login_session_token_sha256'), ['token_sha256'], unique=True)

    with op.batch_alter_table('pathway_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('installed_by', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('installed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))

    with op.batch_alter_table('practitioner', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default='person'))
        batch_op.add_column(sa.Column('totp_secret', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('totp_last_step', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('failed_codes', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('locked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('seal', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.execute("UPDATE pathway_version SET installed_by = 'migration-0008', "
               "installed_at = stored_at")
    # the named identity flows, the sweep and the dispatcher act as (it holds no code)
    op.execute("INSERT INTO practitioner (handle, display_name, role, team, active, digest, "
               "kind, failed_codes) VALUES ('svc.pathway', 'nim-pathway service', 'service', "
               "'system', true, false, 'service', 0)")



def downgrade() -> None:
    op.execute("DELETE FROM practitioner WHERE handle = 'svc.pathway'")
    with op.batch_alter_table('practitioner', schema=None) as batch_op:
        batch_op.drop_column('seal')
        batch_op.drop_column('locked_at')
        batch_op.drop_column('failed_codes')
        batch_op.drop_column('totp_last_step')
        batch_op.drop_column('totp_secret')
        batch_op.drop_column('kind')

    with op.batch_alter_table('pathway_version', schema=None) as batch_op:
        batch_op.drop_column('installed_at')
        batch_op.drop_column('installed_by')

    with op.batch_alter_table('login_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_session_token_sha256'))
        batch_op.drop_index(batch_op.f('ix_login_session_practitioner_id'))

    op.drop_table('login_session')
    with op.batch_alter_table('case_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_key_case_ref'))
    op.drop_table('case_key')
