"""transaction reversals: `transactions.reverses` and one Completed reversal per transaction

Revision ID: 0008
Revises: 0007
A `transaction.reverse` records a new transaction that names the one it undoes in `reverses`.
The original row is never updated (the history is insert-only for the processor's role,
migration 0005): its `reversed_by` is the Completed transaction whose `reverses` names it,
found through the partial unique index below, which also makes two concurrent reversals of
one transaction collide (the batch that loses runs again and then finds the first).
Failed reversals keep `reverses` for the history and do not count.
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('transactions', sa.Column('reverses', sa.Text(), nullable=True))
    op.create_index(
        'uq_transactions_reversal',
        'transactions',
        ['project_id', 'reverses'],
        unique=True,
        postgresql_where=sa.text("reverses IS NOT NULL AND status = 'Completed'"),
    )


def downgrade() -> None:
    op.drop_index('uq_transactions_reversal', table_name='transactions')
    op.drop_column('transactions', 'reverses')
