"""metadata: a `metadata jsonb` column on transactions, holds, wallets and customers

Revision ID: 0010
Revises: 0009
The client's own labels, string keys to string values (schemas/limits.py bounds them), on the
four things a client makes (docs/holds-and-reversals.md, "Metadata"). NOT NULL with a constant
default: PostgreSQL adds such a column without rewriting the table, and every existing row
reads `{}`. Listing transactions (and a wallet's entries, through their transaction) filters
with `metadata @> '{"key": "value"}'`, which the GIN index below serves; `jsonb_path_ops`
indexes only containment, smaller and faster than the default operator class. The grants of
0005 and 0009 are table-wide, so they cover the new columns: nothing to grant.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

TABLES = ('transactions', 'holds', 'wallets', 'customers')


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column('metadata', JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")))
    # Partial: a transaction without metadata (the hot path's) never touches the index; a filter
    # repeats the predicate so the planner can use it (processor/gateway/reads.py).
    op.create_index(
        'ix_transactions_metadata', 'transactions', ['metadata'], postgresql_using='gin', postgresql_ops={'metadata': 'jsonb_path_ops'},
        postgresql_where=sa.text("metadata <> '{}'::jsonb"),
    )


def downgrade() -> None:
    op.drop_index('ix_transactions_metadata', table_name='transactions')
    for table in TABLES:
        op.drop_column(table, 'metadata')
