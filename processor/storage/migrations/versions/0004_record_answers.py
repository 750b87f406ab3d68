"""answers that changed nothing, by the record they answered

Revision ID: 0004
Revises: 0003
`record_answers`: the answer to a request the ledger evaluated without spending its reference
(`ProjectNotFound`, an engine `InternalError`, a record the database refused), keyed by its
Kafka record. A record replayed after a crash (below PostgreSQL's stored offset) is never
evaluated again: it gets this answer back, as a spent reference gets its stored result, so no
record can be answered "nothing was applied" and later be applied.
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'record_answers',
        sa.Column('source_topic', sa.Text(), nullable=False),
        sa.Column('source_partition', sa.Integer(), nullable=False),
        sa.Column('source_offset', sa.BigInteger(), nullable=False),
        sa.Column('result', JSONB(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source_topic', 'source_partition', 'source_offset', name=op.f('pk_record_answers')),
    )


def downgrade() -> None:
    op.drop_table('record_answers')
