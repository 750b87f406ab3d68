"""gateway API keys; an index for reading a transaction's entries

Revision ID: 0002
Revises: 0001
The gateway's `api_keys` table (defined in processor/gateway/api_keys.py, not in the ledger's
models) and `ix_wallet_entries_transaction`: the gateway reads a transaction's entries by
(project_id, transaction_id), which no index of 0001 serves.
"""

from alembic import op
import sqlalchemy as sa

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_keys',
        sa.Column('key_id', sa.Text(), nullable=False),
        sa.Column('key_hash', sa.Text(), nullable=False),
        sa.Column('kind', sa.Text(), nullable=False),
        sa.Column('project_id', sa.Text(), nullable=True),
        sa.Column('customer_id', sa.Text(), nullable=True),
        sa.Column('label', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('operator', 'project', 'customer')", name=op.f('ck_api_keys_kind_known')),
        sa.CheckConstraint(
            "(kind = 'operator' AND project_id IS NULL AND customer_id IS NULL)"
            " OR (kind = 'project' AND project_id IS NOT NULL AND customer_id IS NULL)"
            " OR (kind = 'customer' AND project_id IS NOT NULL AND customer_id IS NOT NULL)",
            name=op.f('ck_api_keys_kind_scope'),
        ),
        sa.PrimaryKeyConstraint('key_id', name=op.f('pk_api_keys')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash')),
    )
    op.create_index('ix_wallet_entries_transaction', 'wallet_entries', ['project_id', 'transaction_id'])


def downgrade() -> None:
    op.drop_index('ix_wallet_entries_transaction', table_name='wallet_entries')
    op.drop_table('api_keys')
