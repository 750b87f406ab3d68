"""the fingerprint of the request that spent a reference

Revision ID: 0003
Revises: 0002
`processed_requests.request_hash`: SHA-256 of the record value that spent the reference. A later
request with the same reference is a retry when its fingerprint matches and a different request
(a client bug: one reference ID reused for two requests) when it does not. Rows written before
this revision have none; their repeats are reported as retries.
"""

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('processed_requests', sa.Column('request_hash', sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column('processed_requests', 'request_hash')
