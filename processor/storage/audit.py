"""Ledger audit: the invariants checked against what PostgreSQL holds, after any amount of traffic.

Used by the crash tests and at the end of every benchmark. Each check returns the offending
rows; an empty report is a consistent ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa

# Balance of each wallet vs. the signed sum of its entries (Hold and Release move no balance),
# and vs. its last entry's balance_after.
WALLET_MISMATCHES = sa.text(
    """
    SELECT w.project_id, w.wallet_id, w.balance,
           COALESCE(SUM(CASE WHEN e.entry_type IN ('Issue', 'Credit') THEN e.amount WHEN e.entry_type IN ('Redeem', 'Debit') THEN -e.amount ELSE 0 END), 0) AS entries_sum
    FROM wallets w LEFT JOIN wallet_entries e ON e.project_id = w.project_id AND e.wallet_id = w.wallet_id
    WHERE (CAST(:project_id AS text) IS NULL OR w.project_id = :project_id)
    GROUP BY w.project_id, w.wallet_id, w.balance
    HAVING w.balance <> COALESCE(SUM(CASE WHEN e.entry_type IN ('Issue', 'Credit') THEN e.amount WHEN e.entry_type IN ('Redeem', 'Debit') THEN -e.amount ELSE 0 END), 0)
    """
)
LAST_ENTRY_MISMATCHES = sa.text(
    """
    SELECT w.project_id, w.wallet_id, w.balance, last.balance_after
    FROM wallets w
    JOIN LATERAL (
        SELECT balance_after FROM wallet_entries e
        WHERE e.project_id = w.project_id AND e.wallet_id = w.wallet_id
        ORDER BY e.entry_id DESC LIMIT 1
    ) last ON true
    WHERE (CAST(:project_id AS text) IS NULL OR w.project_id = :project_id) AND last.balance_after <> w.balance
    """
)
# Per asset: the sum of balances equals everything issued minus everything redeemed.
ASSET_MISMATCHES = sa.text(
    """
    WITH balances AS (
        SELECT project_id, asset_id, SUM(balance) AS total FROM wallets
        WHERE (CAST(:project_id AS text) IS NULL OR project_id = :project_id) GROUP BY project_id, asset_id
    ), flows AS (
        SELECT w.project_id, w.asset_id,
               SUM(CASE WHEN e.entry_type = 'Issue' THEN e.amount ELSE 0 END)
             - SUM(CASE WHEN e.entry_type = 'Redeem' THEN e.amount ELSE 0 END) AS net
        FROM wallet_entries e JOIN wallets w ON w.project_id = e.project_id AND w.wallet_id = e.wallet_id
        WHERE (CAST(:project_id AS text) IS NULL OR w.project_id = :project_id)
        GROUP BY w.project_id, w.asset_id
    )
    SELECT b.project_id, b.asset_id, b.total, COALESCE(f.net, 0) AS net
    FROM balances b LEFT JOIN flows f USING (project_id, asset_id)
    WHERE b.total <> COALESCE(f.net, 0)
    """
)
NEGATIVE_BALANCES = sa.text("SELECT project_id, wallet_id, balance FROM wallets WHERE balance < 0 AND (CAST(:project_id AS text) IS NULL OR project_id = :project_id)")
# A transaction's entries appear once: completed transactions have entries, failed ones none.
FAILED_WITH_ENTRIES = sa.text(
    """
    SELECT t.project_id, t.transaction_id FROM transactions t
    WHERE t.status = 'Failed' AND (CAST(:project_id AS text) IS NULL OR t.project_id = :project_id)
      AND EXISTS (SELECT 1 FROM wallet_entries e WHERE e.project_id = t.project_id AND e.transaction_id = t.transaction_id)
    """
)

# History whose parent is missing. The history tables have no foreign keys (migration 0007): the
# batch that writes a row guarantees its parent, and these checks prove it did.
ORPHANS = sa.text(
    """
    SELECT 'entry without wallet', e.project_id, e.entry_id::text FROM wallet_entries e
    WHERE (CAST(:project_id AS text) IS NULL OR e.project_id = :project_id)
      AND NOT EXISTS (SELECT 1 FROM wallets w WHERE w.project_id = e.project_id AND w.wallet_id = e.wallet_id)
    UNION ALL
    SELECT 'entry without transaction', e.project_id, e.entry_id::text FROM wallet_entries e
    WHERE (CAST(:project_id AS text) IS NULL OR e.project_id = :project_id)
      AND NOT EXISTS (SELECT 1 FROM transactions t WHERE t.project_id = e.project_id AND t.transaction_id = e.transaction_id)
    UNION ALL
    SELECT 'transaction without project', t.project_id, t.transaction_id FROM transactions t
    WHERE (CAST(:project_id AS text) IS NULL OR t.project_id = :project_id)
      AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.project_id = t.project_id)
    UNION ALL
    SELECT 'reference without project', r.project_id, r.reference_id FROM processed_requests r
    WHERE (CAST(:project_id AS text) IS NULL OR r.project_id = :project_id)
      AND NOT EXISTS (SELECT 1 FROM projects p WHERE p.project_id = r.project_id)
    """
)

# A Completed reversal mirrors its original: the original exists, is Completed and not itself a
# reversal, and each wallet's net change in the reversal is the opposite of its change in the
# original (docs/holds-and-reversals.md).
REVERSAL_MISMATCHES = sa.text(
    """
    WITH reversals AS (
        SELECT project_id, transaction_id, reverses FROM transactions
        WHERE reverses IS NOT NULL AND status = 'Completed' AND (CAST(:project_id AS text) IS NULL OR project_id = :project_id)
    ), involved AS (
        SELECT project_id, transaction_id FROM reversals UNION SELECT project_id, reverses FROM reversals
    ), net AS (
        SELECT e.project_id, e.transaction_id, e.wallet_id,
               SUM(CASE WHEN e.entry_type IN ('Issue', 'Credit') THEN e.amount WHEN e.entry_type IN ('Redeem', 'Debit') THEN -e.amount ELSE 0 END) AS delta
        FROM wallet_entries e JOIN involved i ON i.project_id = e.project_id AND i.transaction_id = e.transaction_id
        GROUP BY e.project_id, e.transaction_id, e.wallet_id
    )
    SELECT r.project_id, r.transaction_id, r.reverses FROM reversals r
    WHERE NOT EXISTS (
            SELECT 1 FROM transactions o WHERE o.project_id = r.project_id AND o.transaction_id = r.reverses
              AND o.status = 'Completed' AND o.reverses IS NULL)
       OR EXISTS (
            (SELECT wallet_id, delta FROM net WHERE project_id = r.project_id AND transaction_id = r.transaction_id
             EXCEPT SELECT wallet_id, -delta FROM net WHERE project_id = r.project_id AND transaction_id = r.reverses)
            UNION ALL
            (SELECT wallet_id, -delta FROM net WHERE project_id = r.project_id AND transaction_id = r.reverses
             EXCEPT SELECT wallet_id, delta FROM net WHERE project_id = r.project_id AND transaction_id = r.transaction_id))
    """
)


# Holds (docs/holds-and-reversals.md): each wallet's `held` is the sum of its Active holds and the
# Hold entries minus the Release entries; its last entry's available_after is balance - held;
# every Active hold's wallet is neither Closed nor short of it.
HOLD_MISMATCHES = sa.text(
    """
    WITH active AS (
        SELECT project_id, wallet_id, SUM(amount) AS total FROM holds
        WHERE status = 'Active' AND (CAST(:project_id AS text) IS NULL OR project_id = :project_id) GROUP BY project_id, wallet_id
    ), posted AS (
        SELECT project_id, wallet_id,
               SUM(CASE entry_type WHEN 'Hold' THEN amount WHEN 'Release' THEN -amount ELSE 0 END) AS total
        FROM wallet_entries WHERE entry_type IN ('Hold', 'Release') AND (CAST(:project_id AS text) IS NULL OR project_id = :project_id)
        GROUP BY project_id, wallet_id
    )
    SELECT w.project_id, w.wallet_id, w.held, COALESCE(a.total, 0) AS active, COALESCE(p.total, 0) AS posted, last.available_after
    FROM wallets w
    LEFT JOIN active a ON a.project_id = w.project_id AND a.wallet_id = w.wallet_id
    LEFT JOIN posted p ON p.project_id = w.project_id AND p.wallet_id = w.wallet_id
    LEFT JOIN LATERAL (
        SELECT COALESCE(available_after, balance_after) AS available_after FROM wallet_entries e
        WHERE e.project_id = w.project_id AND e.wallet_id = w.wallet_id ORDER BY e.entry_id DESC LIMIT 1
    ) last ON true
    WHERE (CAST(:project_id AS text) IS NULL OR w.project_id = :project_id)
      AND (w.held <> COALESCE(a.total, 0) OR w.held <> COALESCE(p.total, 0) OR w.held > w.balance
           OR (w.status = 'Closed' AND w.held <> 0) OR last.available_after <> w.balance - w.held)
    """
)


@dataclass(kw_only=True)
class AuditReport:
    wallet_mismatches: list[tuple] = field(default_factory=list)
    last_entry_mismatches: list[tuple] = field(default_factory=list)
    asset_mismatches: list[tuple] = field(default_factory=list)
    negative_balances: list[tuple] = field(default_factory=list)
    failed_with_entries: list[tuple] = field(default_factory=list)
    orphans: list[tuple] = field(default_factory=list)
    reversal_mismatches: list[tuple] = field(default_factory=list)
    hold_mismatches: list[tuple] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.wallet_mismatches or self.last_entry_mismatches or self.asset_mismatches or self.negative_balances or self.failed_with_entries
            or self.orphans or self.reversal_mismatches or self.hold_mismatches
        )


def audit_ledger(engine: sa.Engine, *, project_id: str | None = None) -> AuditReport:
    params = {"project_id": project_id}
    with engine.connect() as connection:
        def rows(query: sa.TextClause) -> list[tuple]:
            return [tuple(row) for row in connection.execute(query, params)]

        return AuditReport(
            wallet_mismatches=rows(WALLET_MISMATCHES),
            last_entry_mismatches=rows(LAST_ENTRY_MISMATCHES),
            asset_mismatches=rows(ASSET_MISMATCHES),
            negative_balances=rows(NEGATIVE_BALANCES),
            failed_with_entries=rows(FAILED_WITH_ENTRIES),
            orphans=rows(ORPHANS),
            reversal_mismatches=rows(REVERSAL_MISMATCHES),
            hold_mismatches=rows(HOLD_MISMATCHES),
        )
