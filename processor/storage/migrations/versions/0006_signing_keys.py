"""signing keys: the tenant wall on the shared requests topic

Revision ID: 0006
Revises: 0005
`signing_keys`: each key's ID, its scope (a project, or NULL for an operator key), its label,
when it was made and revoked, and the SHA-256 of its secret. The secret itself is derived from
the deployment's master signing secret and is never stored (schemas/signing.py). The
processor reads keys; the gateway (and the operator's CLI) makes and revokes them.
"""

import os
import re

from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def _role(setting: str, default: str) -> str:
    role = os.environ.get(setting, default)
    if re.fullmatch(r'[a-z_][a-z0-9_]{0,62}', role) is None:
        raise ValueError(f'{setting}={role!r}: a database role name here is lower-case letters, digits and _')
    return role


def upgrade() -> None:
    op.create_table(
        'signing_keys',
        sa.Column('key_id', sa.Text(), nullable=False),
        sa.Column('project_id', sa.Text(), nullable=True),
        sa.Column('secret_sha256', sa.LargeBinary(), nullable=False),
        sa.Column('label', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('key_id', name=op.f('pk_signing_keys')),
        sa.CheckConstraint("key_id ~ '^[0-9a-f]{16}$'", name=op.f('ck_signing_keys_key_id_format')),
    )
    op.create_index('ix_signing_keys_project', 'signing_keys', ['project_id', 'key_id'])
    processor, gateway = _role('CLOUDWALLET_PROCESSOR_DB_ROLE', 'cloudwallet_processor'), _role('CLOUDWALLET_GATEWAY_DB_ROLE', 'cloudwallet_gateway')
    op.execute(f'GRANT SELECT ON signing_keys TO {processor}')
    # The gateway makes keys and revokes them; it can never change a key's scope or secret hash.
    op.execute(f'GRANT SELECT, INSERT, UPDATE (revoked_at) ON signing_keys TO {gateway}')


def downgrade() -> None:
    op.drop_index('ix_signing_keys_project', table_name='signing_keys')
    op.drop_table('signing_keys')
