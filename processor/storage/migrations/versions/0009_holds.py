"""holds: the `holds` table, `wallets.held`, `wallet_entries.available_after`, Hold / Release entries

Revision ID: 0009
Revises: 0008
A hold reserves part of a wallet's balance (docs/holds-and-reversals.md). `wallets.held` is the
sum of the wallet's Active holds (0 <= held <= balance: available never goes below zero); an
entry's `available_after` is its wallet's balance minus held after it (NULL when that is the
balance: nothing held, as on every entry written before holds existed). `holds` is state, not history: its status
changes, under the lock of its wallet's row, like a wallet's balance. The processor's role may
insert and update it, the gateway's read it within its project (row-level security, as 0005).
"""

import sqlalchemy as sa
from alembic import op

from processor.storage.migrations.roles import database_roles

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

SCOPE = "current_setting('cloudwallet.project_id', true)"


def upgrade() -> None:
    processor, gateway = database_roles()
    op.add_column('wallets', sa.Column('held', sa.Numeric(38, 0), nullable=False, server_default='0'))
    op.create_check_constraint(op.f('ck_wallets_held_within_balance'), 'wallets', 'held >= 0 AND held <= balance')
    op.add_column('wallet_entries', sa.Column('available_after', sa.Numeric(38, 0), nullable=True))
    op.drop_constraint(op.f('ck_wallet_entries_entry_type_known'), 'wallet_entries', type_='check')
    op.create_check_constraint(
        op.f('ck_wallet_entries_entry_type_known'), 'wallet_entries', "entry_type IN ('Issue', 'Redeem', 'Debit', 'Credit', 'Hold', 'Release')"
    )
    op.create_check_constraint(op.f('ck_wallet_entries_available_after_within_balance'), 'wallet_entries', 'available_after >= 0 AND available_after <= balance_after')
    op.create_table(
        'holds',
        sa.Column('project_id', sa.Text(), nullable=False),
        sa.Column('hold_id', sa.Text(), nullable=False),
        sa.Column('wallet_id', sa.Text(), nullable=False),
        sa.Column('to_wallet_id', sa.Text(), nullable=True),
        sa.Column('amount', sa.Numeric(38, 0), nullable=False),
        sa.Column('captured', sa.Numeric(38, 0), nullable=True),
        sa.Column('status', sa.Text(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('created_by', sa.Text(), nullable=False),
        sa.Column('finished_by', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('project_id', 'hold_id', name='pk_holds'),
        sa.ForeignKeyConstraint(['project_id', 'wallet_id'], ['wallets.project_id', 'wallets.wallet_id'], name='fk_holds_project_id_wallet_id_wallets'),
        sa.CheckConstraint('amount > 0', name='ck_holds_amount_positive'),
        sa.CheckConstraint("status IN ('Active', 'Captured', 'Voided', 'Expired')", name='ck_holds_status_known'),
        sa.CheckConstraint("(status = 'Captured') = (captured IS NOT NULL) AND (captured IS NULL OR (captured > 0 AND captured <= amount))", name='ck_holds_captured_when_captured'),
        sa.CheckConstraint("(status = 'Active') = (finished_by IS NULL)", name='ck_holds_finished_unless_active'),
    )
    # A wallet's Active holds (expiry before a request, loader rule 8) and the sweep's due holds.
    op.create_index('ix_holds_active_wallet', 'holds', ['project_id', 'wallet_id'], postgresql_where=sa.text("status = 'Active'"))
    op.create_index('ix_holds_active_expiry', 'holds', ['expires_at'], postgresql_where=sa.text("status = 'Active' AND expires_at IS NOT NULL"))
    op.execute(f'GRANT SELECT, INSERT, UPDATE ON holds TO {processor}')
    op.execute(f'GRANT SELECT ON holds TO {gateway}')
    op.execute('ALTER TABLE holds ENABLE ROW LEVEL SECURITY')
    op.execute('ALTER TABLE holds FORCE ROW LEVEL SECURITY')
    op.execute('CREATE POLICY holds_owner ON holds TO CURRENT_USER USING (true) WITH CHECK (true)')
    op.execute(f"CREATE POLICY holds_gateway ON holds FOR SELECT TO {gateway} USING ({SCOPE} = '*' OR project_id = {SCOPE})")


def downgrade() -> None:
    op.drop_table('holds')
    op.drop_constraint(op.f('ck_wallet_entries_available_after_within_balance'), 'wallet_entries', type_='check')
    op.drop_constraint(op.f('ck_wallet_entries_entry_type_known'), 'wallet_entries', type_='check')
    op.create_check_constraint(op.f('ck_wallet_entries_entry_type_known'), 'wallet_entries', "entry_type IN ('Issue', 'Redeem', 'Debit', 'Credit')")
    op.drop_column('wallet_entries', 'available_after')
    op.drop_constraint(op.f('ck_wallets_held_within_balance'), 'wallets', type_='check')
    op.drop_column('wallets', 'held')
