"""history rows without foreign-key checks: the batch guarantees them

Revision ID: 0007
Revises: 0006
The append-only history (`wallet_entries`, `transactions`, `processed_requests`) is written by
COPY, a batch at a time, and each of its rows paid for foreign-key checks the batch already
guarantees: PostgreSQL ran a `SELECT ... FOR KEY SHARE` on the parent per row, about 40 us per
entry row and 10-15 us per transaction and reference row, ~40 % of PostgreSQL's CPU per
transfer (docs/benchmark.md, "Cheaper rows"). What they checked still holds, by construction
and by audit:

* an entry's wallet is a wallet the batch loaded and locked (the engine has no other), and
  wallets are never deleted (invariant WALLETS_NEVER_DELETED);
* an entry's transaction is written by the same batch, in the same database transaction;
* a transaction's and a spent reference's project exists (the engine answers ProjectNotFound
  otherwise), and projects are never deleted;
* `processor/storage/audit.py` checks all four (orphan entries, transactions and references)
  after every benchmark, fuzz and crash test.

The checks on the low-volume tables (assets, customers, wallets) stay.
"""

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

DROPPED = (
    ('wallet_entries', 'fk_wallet_entries_project_id_wallet_id_wallets', ['project_id', 'wallet_id'], 'wallets', ['project_id', 'wallet_id']),
    (
        'wallet_entries',
        'fk_wallet_entries_project_id_transaction_id_transactions',
        ['project_id', 'transaction_id'],
        'transactions',
        ['project_id', 'transaction_id'],
    ),
    ('transactions', 'fk_transactions_project_id_projects', ['project_id'], 'projects', ['project_id']),
    ('processed_requests', 'fk_processed_requests_project_id_projects', ['project_id'], 'projects', ['project_id']),
)


def upgrade() -> None:
    for table, name, _, _, _ in DROPPED:
        op.drop_constraint(name, table, type_='foreignkey')


def downgrade() -> None:
    for table, name, columns, parent, parent_columns in DROPPED:
        op.create_foreign_key(name, table, parent, columns, parent_columns)
