"""initial schema

Revision ID: 0001
Revises: 
Tables, constraints and indexes of the ledger; wallet entries are append-only by trigger.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# Entries are append-only: the database refuses to change or remove one.
APPEND_ONLY_FUNCTION = """
CREATE FUNCTION wallet_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'wallet_entries is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END $$;
"""
APPEND_ONLY_TRIGGERS = (
    "CREATE TRIGGER wallet_entries_append_only BEFORE UPDATE OR DELETE ON wallet_entries "
    "FOR EACH ROW EXECUTE FUNCTION wallet_entries_append_only()",
    "CREATE TRIGGER wallet_entries_no_truncate BEFORE TRUNCATE ON wallet_entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION wallet_entries_append_only()",
)

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('consumer_offsets',
    sa.Column('consumer_group', sa.Text(), nullable=False),
    sa.Column('topic', sa.Text(), nullable=False),
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('next_offset', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('next_offset >= 0', name=op.f('ck_consumer_offsets_offset_not_negative')),
    sa.PrimaryKeyConstraint('consumer_group', 'topic', 'partition', name=op.f('pk_consumer_offsets'))
    )
    op.create_table('projects',
    sa.Column('project_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('project_id', name=op.f('pk_projects'))
    )
    op.create_table('assets',
    sa.Column('project_id', sa.Text(), nullable=False),
    sa.Column('asset_id', sa.Text(), nullable=False),
    sa.Column('code', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('fractions', sa.BigInteger(), nullable=False),
    sa.Column('in_use', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('fractions IN (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000, 10000000000, 100000000000, 1000000000000, 10000000000000, 100000000000000, 1000000000000000, 10000000000000000, 100000000000000000, 1000000000000000000)', name=op.f('ck_assets_fractions_power_of_ten')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_assets_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', 'asset_id', name=op.f('pk_assets'))
    )
    op.create_table('customers',
    sa.Column('project_id', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('Active', 'Suspended')", name=op.f('ck_customers_status_known')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_customers_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', 'customer_id', name=op.f('pk_customers'))
    )
    op.create_table('processed_requests',
    sa.Column('project_id', sa.Text(), nullable=False),
    sa.Column('reference_id', sa.Text(), nullable=False),
    sa.Column('request_type', sa.Text(), nullable=False),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('source_topic', sa.Text(), nullable=True),
    sa.Column('source_partition', sa.Integer(), nullable=True),
    sa.Column('source_offset', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_processed_requests_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', 'reference_id', name=op.f('pk_processed_requests'))
    )
    op.create_table('transactions',
    sa.Column('project_id', sa.Text(), nullable=False),
    sa.Column('transaction_id', sa.Text(), nullable=False),
    sa.Column('reference_id', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('operations', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('error_code', sa.Text(), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('failed_operation_index', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(status = 'Failed') = (error_code IS NOT NULL)", name=op.f('ck_transactions_failed_has_error')),
    sa.CheckConstraint("status IN ('Completed', 'Failed')", name=op.f('ck_transactions_status_final')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_transactions_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', 'transaction_id', name=op.f('pk_transactions')),
    sa.UniqueConstraint('project_id', 'reference_id', name=op.f('uq_transactions_project_id_reference_id'))
    )
    op.create_index('ix_transactions_time', 'transactions', ['project_id', 'created_at', 'transaction_id'], unique=False)
    op.create_table('wallets',
    sa.Column('project_id', sa.Text(), nullable=False),
    sa.Column('wallet_id', sa.Text(), nullable=False),
    sa.Column('asset_id', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.Text(), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('balance', sa.Numeric(precision=38, scale=0), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status <> 'Closed' OR balance = 0", name=op.f('ck_wallets_closed_is_empty')),
    sa.CheckConstraint("status IN ('Open', 'Suspended', 'Closed')", name=op.f('ck_wallets_status_known')),
    sa.CheckConstraint('balance >= 0', name=op.f('ck_wallets_balance_not_negative')),
    sa.ForeignKeyConstraint(['project_id', 'asset_id'], ['assets.project_id', 'assets.asset_id'], name=op.f('fk_wallets_project_id_asset_id_assets')),
    sa.ForeignKeyConstraint(['project_id'], ['projects.project_id'], name=op.f('fk_wallets_project_id_projects')),
    sa.PrimaryKeyConstraint('project_id', 'wallet_id', name=op.f('pk_wallets'))
    )
    op.create_index('ix_wallets_customer', 'wallets', ['project_id', 'customer_id', 'wallet_id'], unique=False)
    op.create_table('wallet_entries',
    sa.Column('project_id', sa.Text(), nullable=False),
    sa.Column('entry_id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('wallet_id', sa.Text(), nullable=False),
    sa.Column('transaction_id', sa.Text(), nullable=False),
    sa.Column('operation_index', sa.Integer(), nullable=False),
    sa.Column('entry_type', sa.Text(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=38, scale=0), nullable=False),
    sa.Column('balance_after', sa.Numeric(precision=38, scale=0), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("entry_type IN ('Issue', 'Redeem', 'Debit', 'Credit')", name=op.f('ck_wallet_entries_entry_type_known')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_wallet_entries_amount_positive')),
    sa.CheckConstraint('balance_after >= 0', name=op.f('ck_wallet_entries_balance_after_not_negative')),
    sa.ForeignKeyConstraint(['project_id', 'transaction_id'], ['transactions.project_id', 'transactions.transaction_id'], name=op.f('fk_wallet_entries_project_id_transaction_id_transactions')),
    sa.ForeignKeyConstraint(['project_id', 'wallet_id'], ['wallets.project_id', 'wallets.wallet_id'], name=op.f('fk_wallet_entries_project_id_wallet_id_wallets')),
    sa.PrimaryKeyConstraint('project_id', 'entry_id', name=op.f('pk_wallet_entries'))
    )
    op.create_index('ix_wallet_entries_wallet_time', 'wallet_entries', ['project_id', 'wallet_id', 'created_at', 'entry_id'], unique=False)
    op.execute(APPEND_ONLY_FUNCTION)
    for trigger in APPEND_ONLY_TRIGGERS:
        op.execute(trigger)


def downgrade() -> None:
    op.execute("DROP TRIGGER wallet_entries_no_truncate ON wallet_entries")
    op.execute("DROP TRIGGER wallet_entries_append_only ON wallet_entries")
    op.execute("DROP FUNCTION wallet_entries_append_only()")
    op.drop_index('ix_wallet_entries_wallet_time', table_name='wallet_entries')
    op.drop_table('wallet_entries')
    op.drop_index('ix_wallets_customer', table_name='wallets')
    op.drop_table('wallets')
    op.drop_index('ix_transactions_time', table_name='transactions')
    op.drop_table('transactions')
    op.drop_table('processed_requests')
    op.drop_table('customers')
    op.drop_table('assets')
    op.drop_table('projects')
    op.drop_table('consumer_offsets')
