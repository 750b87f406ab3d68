"""The ledger's tables. PostgreSQL is the source of truth and guards the invariants too.

Every key starts with `project_id`: a ledger transaction never leaves its project, so the data
can be sharded on it (e.g. Citus) without a cross-shard write.
Amounts and balances are integers in the asset's minor units, NUMERIC(38, 0): exact, and wide
enough for any asset scale up to 10**18.
"""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy.dialects.postgresql import JSONB

from schemas.requests import Operation

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Read back as Decimal (exact) and turned into int by the readers; never as float.
MINOR_UNITS = sa.Numeric(38, 0)
TIMESTAMP = sa.DateTime(timezone=True)


def metadata_column() -> sa.Column[dict[str, str]]:
    """The client's labels (string keys to string values, migration 0010); '{}' for none."""
    return sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb"))


projects = sa.Table(
    "projects",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
)

assets = sa.Table(
    "assets",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.project_id"), primary_key=True),
    sa.Column("asset_id", sa.Text, primary_key=True),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("fractions", sa.BigInteger, nullable=False),
    # Set when the first wallet with this asset opens; an asset in use can never be deleted.
    sa.Column("in_use", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.CheckConstraint(
        "fractions IN (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000, "
        "10000000000, 100000000000, 1000000000000, 10000000000000, 100000000000000, "
        "1000000000000000, 10000000000000000, 100000000000000000, 1000000000000000000)",
        name="fractions_power_of_ten",
    ),
)

customers = sa.Table(
    "customers",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.project_id"), primary_key=True),
    sa.Column("customer_id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    metadata_column(),
    sa.CheckConstraint("status IN ('Active', 'Suspended')", name="status_known"),
)

wallets = sa.Table(
    "wallets",
    metadata,
    sa.Column("project_id", sa.Text, sa.ForeignKey("projects.project_id"), primary_key=True),
    sa.Column("wallet_id", sa.Text, primary_key=True),
    sa.Column("asset_id", sa.Text, nullable=False),
    # No foreign key: a deleted customer's closed wallets keep the ID as history.
    sa.Column("customer_id", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("description", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("balance", MINOR_UNITS, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    # Reserved by the wallet's Active holds; available = balance - held (migration 0009).
    sa.Column("held", MINOR_UNITS, nullable=False, server_default="0"),
    metadata_column(),
    sa.ForeignKeyConstraint(["project_id", "asset_id"], ["assets.project_id", "assets.asset_id"]),
    sa.CheckConstraint("balance >= 0", name="balance_not_negative"),
    sa.CheckConstraint("held >= 0 AND held <= balance", name="held_within_balance"),
    sa.CheckConstraint("status IN ('Open', 'Suspended', 'Closed')", name="status_known"),
    sa.CheckConstraint("status <> 'Closed' OR balance = 0", name="closed_is_empty"),
    sa.Index("ix_wallets_customer", "project_id", "customer_id", "wallet_id"),
)

# The history tables (transactions, wallet_entries, processed_requests) have no foreign keys:
# the batch that writes them guarantees their parents, and the audit checks it (migration 0007).
# The JSON of `transactions.operations`: written by the batch (COPY), read back by a reversal.
OPERATIONS_JSON: TypeAdapter[list[Operation]] = TypeAdapter(list[Operation])

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("transaction_id", sa.Text, primary_key=True),
    sa.Column("reference_id", sa.Text, nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("operations", JSONB, nullable=False),
    sa.Column("error_code", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("failed_operation_index", sa.Integer),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("reverses", sa.Text),  # the transaction a transaction.reverse undid (migration 0008)
    metadata_column(),
    sa.UniqueConstraint("project_id", "reference_id"),
    sa.CheckConstraint("status IN ('Completed', 'Failed')", name="status_final"),
    sa.CheckConstraint("(status = 'Failed') = (error_code IS NOT NULL)", name="failed_has_error"),
    sa.Index("ix_transactions_time", "project_id", "created_at", "transaction_id"),
    # One Completed reversal per transaction; also how an original finds its `reversed_by`.
    sa.Index("uq_transactions_reversal", "project_id", "reverses", unique=True, postgresql_where=sa.text("reverses IS NOT NULL AND status = 'Completed'")),
    # The listing's one metadata filter, `metadata @> '{"key": "value"}'` (containment only), over
    # the transactions that have metadata: one without (the hot path's) never touches the index.
    sa.Index(
        "ix_transactions_metadata", "metadata", postgresql_using="gin", postgresql_ops={"metadata": "jsonb_path_ops"},
        postgresql_where=sa.text("metadata <> '{}'::jsonb"),
    ),
)

wallet_entries = sa.Table(
    "wallet_entries",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("entry_id", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("wallet_id", sa.Text, nullable=False),
    sa.Column("transaction_id", sa.Text, nullable=False),
    sa.Column("operation_index", sa.Integer, nullable=False),
    sa.Column("entry_type", sa.Text, nullable=False),
    sa.Column("amount", MINOR_UNITS, nullable=False),
    sa.Column("balance_after", MINOR_UNITS, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    # balance_after minus what Active holds reserve after the entry; NULL when that is
    # balance_after (nothing held), and on entries from before migration 0009.
    sa.Column("available_after", MINOR_UNITS),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("balance_after >= 0", name="balance_after_not_negative"),
    sa.CheckConstraint("entry_type IN ('Issue', 'Redeem', 'Debit', 'Credit', 'Hold', 'Release')", name="entry_type_known"),
    sa.CheckConstraint("available_after >= 0 AND available_after <= balance_after", name="available_after_within_balance"),
    sa.Index("ix_wallet_entries_wallet_time", "project_id", "wallet_id", "created_at", "entry_id"),
    sa.Index("ix_wallet_entries_transaction", "project_id", "transaction_id"),
)

# A hold's reservation (docs/holds-and-reversals.md): state, changed under its wallet's row lock.
holds = sa.Table(
    "holds",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("hold_id", sa.Text, primary_key=True),
    sa.Column("wallet_id", sa.Text, nullable=False),
    sa.Column("to_wallet_id", sa.Text),
    sa.Column("amount", MINOR_UNITS, nullable=False),
    sa.Column("captured", MINOR_UNITS),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("expires_at", TIMESTAMP),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("finished_by", sa.Text),
    sa.Column("created_at", TIMESTAMP, nullable=False),
    sa.Column("finished_at", TIMESTAMP),
    metadata_column(),
    sa.ForeignKeyConstraint(["project_id", "wallet_id"], ["wallets.project_id", "wallets.wallet_id"]),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("status IN ('Active', 'Captured', 'Voided', 'Expired')", name="status_known"),
    sa.CheckConstraint("(status = 'Captured') = (captured IS NOT NULL) AND (captured IS NULL OR (captured > 0 AND captured <= amount))", name="captured_when_captured"),
    sa.CheckConstraint("(status = 'Active') = (finished_by IS NULL)", name="finished_unless_active"),
    sa.Index("ix_holds_active_wallet", "project_id", "wallet_id", postgresql_where=sa.text("status = 'Active'")),
    sa.Index("ix_holds_active_expiry", "expires_at", postgresql_where=sa.text("status = 'Active' AND expires_at IS NOT NULL")),
)

# One row per spent reference ID, holding the result every repeat answers with.
processed_requests = sa.Table(
    "processed_requests",
    metadata,
    sa.Column("project_id", sa.Text, primary_key=True),
    sa.Column("reference_id", sa.Text, primary_key=True),
    sa.Column("request_type", sa.Text, nullable=False),
    sa.Column("result", JSONB, nullable=False),
    # The Kafka record that spent the reference: a redelivery of that very record is answered
    # with this result as the first time; any other record with the same reference gets it
    # under a `duplicate` header (read by clients as DuplicateReferenceId).
    sa.Column("source_topic", sa.Text),
    sa.Column("source_partition", sa.Integer),
    sa.Column("source_offset", sa.BigInteger),
    # SHA-256 of that record's value: tells a retry (same bytes) from a different request that
    # reused the reference ID.
    sa.Column("request_hash", sa.LargeBinary),
    sa.Column("created_at", TIMESTAMP, nullable=False),
)

# The answer to a record the ledger evaluated without spending its reference (ProjectNotFound,
# InternalError): a replay of that record gets it back instead of being evaluated again.
record_answers = sa.Table(
    "record_answers",
    metadata,
    sa.Column("source_topic", sa.Text, primary_key=True),
    sa.Column("source_partition", sa.Integer, primary_key=True),
    sa.Column("source_offset", sa.BigInteger, primary_key=True),
    sa.Column("result", JSONB, nullable=False),
    sa.Column("created_at", TIMESTAMP, nullable=False),
)

# The next Kafka offset to process per partition, committed in the same transaction as the ledger.
consumer_offsets = sa.Table(
    "consumer_offsets",
    metadata,
    sa.Column("consumer_group", sa.Text, primary_key=True),
    sa.Column("topic", sa.Text, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TIMESTAMP, nullable=False),
    sa.CheckConstraint("next_offset >= 0", name="offset_not_negative"),
)

# The gateway's API keys: only a SHA-256 of each key is stored (processor/gateway/api_keys.py).
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("project_id", sa.Text),
    sa.Column("customer_id", sa.Text),
    sa.Column("label", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("kind IN ('operator', 'project', 'customer')", name="kind_known"),
    sa.CheckConstraint(
        "(kind = 'operator' AND project_id IS NULL AND customer_id IS NULL)"
        " OR (kind = 'project' AND project_id IS NOT NULL AND customer_id IS NULL)"
        " OR (kind = 'customer' AND project_id IS NOT NULL AND customer_id IS NOT NULL)",
        name="kind_scope",
    ),
)

# Signing keys of requests: only the SHA-256 of each secret is stored (schemas/signing.py).
signing_keys = sa.Table(
    "signing_keys",
    metadata,
    sa.Column("key_id", sa.Text, primary_key=True),
    sa.Column("project_id", sa.Text),  # NULL: an operator key
    sa.Column("secret_sha256", sa.LargeBinary, nullable=False),
    sa.Column("label", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint("key_id ~ '^[0-9a-f]{16}$'", name="key_id_format"),
    sa.Index("ix_signing_keys_project", "project_id", "key_id"),
)

# wallet_entries is append-only: migration 0001 installs triggers that refuse UPDATE, DELETE, TRUNCATE.
