"""The SQL the hot path sends straight through psycopg, in one place.

One statement or one COPY per table and batch: executemany would be a statement per row, and
built through SQLAlchemy each statement cost ~0.5 ms of Python per batch (a new statement, its
cache key, its compiled form), most of a small batch's time. Arrays go as binary parameters.

Metadata (migration 0010) is written as JSON text and read back as NULL when it is empty
(`STORED_METADATA`): the loader then shares one empty dict (ledger.state.NO_METADATA) instead of
parsing a '{}' per row, so a ledger without metadata pays nothing for it.
"""

STORED_METADATA = "NULLIF(metadata, '{}'::jsonb)"

ENTRY_COLUMNS = (
    "project_id",
    "wallet_id",
    "transaction_id",
    "operation_index",
    "entry_type",
    "amount",
    "balance_after",
    "created_at",
    "available_after",
)

# Balance-only changes, the hot path's: never metadata (a wallet's changes only with a rename, which
# goes through UPSERT_WALLETS).
UPDATE_BALANCES = (
    "UPDATE wallets AS w SET balance = v.balance::numeric, held = v.held::numeric, updated_at = %b "
    "FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS v(project_id, wallet_id, balance, held) "
    "WHERE w.project_id = v.project_id AND w.wallet_id = v.wallet_id"
)
UPSERT_WALLETS = (
    "INSERT INTO wallets (project_id, wallet_id, asset_id, customer_id, name, description, status, balance, held, created_at, updated_at, metadata) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]::numeric[], "
    "%b::text[]::numeric[], %b::timestamptz[], %b::timestamptz[], %b::text[]::jsonb[]) "
    "ON CONFLICT (project_id, wallet_id) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description, "
    "status = EXCLUDED.status, balance = EXCLUDED.balance, held = EXCLUDED.held, updated_at = EXCLUDED.updated_at, metadata = EXCLUDED.metadata"
)
COPY_TRANSACTIONS = (
    "COPY transactions (project_id, transaction_id, reference_id, description, status, operations, error_code, error_message, "
    "failed_operation_index, created_at, reverses, metadata) FROM STDIN"
)
COPY_ENTRIES = f"COPY wallet_entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN"
COPY_REFERENCES = (
    "COPY processed_requests (project_id, reference_id, request_type, result, source_topic, source_partition, source_offset, "
    "request_hash, created_at) "
    "FROM STDIN"
)
SELECT_PROJECTS = "SELECT project_id, name, created_at FROM projects WHERE project_id = ANY(%b::text[]) ORDER BY project_id"
SELECT_ASSETS = (
    "SELECT project_id, asset_id, code, name, fractions, in_use, created_at FROM assets "
    "WHERE (project_id, asset_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))"
)
SELECT_REFERENCES = (
    "SELECT project_id, reference_id, result, source_topic, source_partition, source_offset, request_hash FROM processed_requests "
    "WHERE (project_id, reference_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))"
)
SELECT_SIGNING_KEYS = "SELECT key_id, project_id, revoked_at, secret_sha256 FROM signing_keys WHERE key_id = ANY(%b::text[])"
SELECT_OFFSETS = "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = %b AND topic = %b"
# A redelivered (older) batch never moves the stored position back.
UPSERT_OFFSETS = (
    "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset, updated_at) "
    "SELECT %b, t, p, o, %b FROM unnest(%b::text[], %b::int[], %b::bigint[]) AS v(t, p, o) "
    "ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET "
    "next_offset = greatest(consumer_offsets.next_offset, EXCLUDED.next_offset), updated_at = EXCLUDED.updated_at"
)
# A str.format template ({condition}): the braces of STORED_METADATA's '{}' are doubled.
LOCK_WALLETS = (
    f"SELECT project_id, wallet_id, asset_id, customer_id, name, description, status, balance, held, created_at, "
    f"{STORED_METADATA.replace('{}', '{{}}')} FROM wallets "
    "WHERE {condition} ORDER BY project_id, wallet_id FOR UPDATE"
)
# The transactions a reversal names, with the Completed reversal of each (uq_transactions_reversal).
# Not locked: the history is insert-only for the processor (no UPDATE, so no FOR UPDATE); the
# unique index makes two concurrent reversals of one transaction collide instead.
SELECT_TRANSACTIONS = (
    "SELECT t.project_id, t.transaction_id, t.status, t.operations, t.reverses, "
    "(SELECT r.transaction_id FROM transactions r WHERE r.project_id = t.project_id AND r.reverses = t.transaction_id "
    "AND r.status = 'Completed') FROM transactions t "
    "WHERE (t.project_id, t.transaction_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))"
)

_HOLD_STATE = "project_id, hold_id, wallet_id, to_wallet_id, amount, captured, status, expires_at, created_by, finished_by, created_at, finished_at"
HOLD_COLUMNS = f"{_HOLD_STATE}, metadata"
_HOLD_READ = f"{_HOLD_STATE}, {STORED_METADATA}"
# Loader rule 8, before the wallet locks: the wallets of the holds the batch names (they never change).
SELECT_HOLD_WALLETS = (
    "SELECT project_id, wallet_id, to_wallet_id FROM holds WHERE (project_id, hold_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))"
)
# ... after them: the named holds, and the Active holds of the locked wallets with held > 0.
SELECT_HOLDS = (
    f"SELECT {_HOLD_READ} FROM holds WHERE (project_id, hold_id) IN (SELECT * FROM unnest(%b::text[], %b::text[])) "
    f"UNION ALL SELECT {_HOLD_READ} FROM holds WHERE status = 'Active' AND (project_id, wallet_id) IN (SELECT * FROM unnest(%b::text[], %b::text[]))"
)
# A hold's metadata is its creating transaction's: written once, never updated.
UPSERT_HOLDS = (
    f"INSERT INTO holds ({HOLD_COLUMNS}) "
    "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[]::numeric[], %b::text[]::numeric[], %b::text[], "
    "%b::timestamptz[], %b::text[], %b::text[], %b::timestamptz[], %b::timestamptz[], %b::text[]::jsonb[]) "
    "ON CONFLICT (project_id, hold_id) DO UPDATE SET captured = EXCLUDED.captured, status = EXCLUDED.status, "
    "finished_by = EXCLUDED.finished_by, finished_at = EXCLUDED.finished_at"
)
