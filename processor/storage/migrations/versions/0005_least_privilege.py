"""least privilege: the processor and the gateway as non-owner roles; row-level security by project

Revision ID: 0005
Revises: 0004
The migrations run as the owner. The processor and the gateway connect as two other roles
(`cloudwallet_processor`, `cloudwallet_gateway`; other names through
CLOUDWALLET_PROCESSOR_DB_ROLE / CLOUDWALLET_GATEWAY_DB_ROLE when migrating) that get only:

* processor: the ledger's history (transactions, wallet_entries, processed_requests,
  record_answers) INSERT and SELECT only; current state (projects, assets, customers, wallets)
  and its own offsets as it needs; nothing on api_keys. Not an owner, so it cannot drop the
  append-only trigger, alter a table or bypass row-level security.
* gateway: SELECT on what it reads (a request's stored result included), and API-key bookkeeping (api_keys: SELECT, INSERT,
  UPDATE); nothing else is writable.

Row-level security (FORCE: the owner is held to it too) on everything the gateway reads: the
gateway sees the rows of the project its request set with
`SELECT set_config('cloudwallet.project_id', :project, true)` ('*' for an operator key's
reads across projects), and no row when it set nothing. The owner's policy sees every row (it
maintains). The processor applies batches across projects and writes history with COPY, which
PostgreSQL refuses under row-level security: its role must have BYPASSRLS (a superuser's grant).

The roles must exist (the local stack creates them with passwords; in production the DBA does,
see docs/security.md). A superuser running the migration makes them NOLOGIN when missing.
"""

import os
import re

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

HISTORY = ('transactions', 'wallet_entries', 'processed_requests', 'record_answers')
STATE = ('projects', 'assets', 'customers', 'wallets')
PROCESSOR_GRANTS = {
    **{table: 'SELECT, INSERT' for table in HISTORY},
    'projects': 'SELECT, INSERT, UPDATE',
    'assets': 'SELECT, INSERT, UPDATE, DELETE',
    'customers': 'SELECT, INSERT, UPDATE, DELETE',
    'wallets': 'SELECT, INSERT, UPDATE',
    'consumer_offsets': 'SELECT, INSERT, UPDATE',
}
GATEWAY_GRANTS = {
    **{table: 'SELECT' for table in ('projects', 'assets', 'customers', 'wallets', 'transactions', 'wallet_entries', 'processed_requests')},
    'api_keys': 'SELECT, INSERT, UPDATE',
}
PROJECT_TABLES = ('projects', 'assets', 'customers', 'wallets', 'transactions', 'wallet_entries', 'processed_requests')
SCOPE = "current_setting('cloudwallet.project_id', true)"


def _roles() -> tuple[str, str]:
    processor = os.environ.get('CLOUDWALLET_PROCESSOR_DB_ROLE', 'cloudwallet_processor')
    gateway = os.environ.get('CLOUDWALLET_GATEWAY_DB_ROLE', 'cloudwallet_gateway')
    for role in (processor, gateway):
        # Folded to lower case by GRANT but compared as written in pg_roles: lower case only.
        if re.fullmatch(r'[a-z_][a-z0-9_]{0,62}', role) is None:
            raise ValueError(f'database role name {role!r}: lower-case letters, digits and _ only')
    return processor, gateway


def _ensure_role(role: str, *, options: str) -> None:
    """The role exists with `options` (made NOLOGIN by a superuser), or the migration stops and
    says what the DBA must run."""
    create = f"CREATE ROLE {role} NOLOGIN {options}".strip()
    checks = "rolbypassrls" if "BYPASSRLS" in options else "true"
    op.execute(
        f"""DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
            IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
              {create};
            ELSE
              RAISE EXCEPTION 'database role {role} does not exist: as a superuser, {create.replace("NOLOGIN", "LOGIN PASSWORD ...")} (docs/security.md)';
            END IF;
          END IF;
          IF NOT (SELECT {checks} FROM pg_roles WHERE rolname = '{role}') THEN
            RAISE EXCEPTION 'database role {role} needs {options}: as a superuser, ALTER ROLE {role} {options} (docs/security.md)';
          END IF;
        END $$"""
    )


def upgrade() -> None:
    processor, gateway = _roles()
    _ensure_role(processor, options="BYPASSRLS")
    _ensure_role(gateway, options="")
    for role in (processor, gateway):
        op.execute(f'GRANT USAGE ON SCHEMA public TO {role}')
        # `cloudwallet run` and the gateway check that the schema is at head before starting.
        op.execute(f'GRANT SELECT ON alembic_version TO {role}')
    for table, privileges in PROCESSOR_GRANTS.items():
        op.execute(f'GRANT {privileges} ON {table} TO {processor}')
    op.execute(f'GRANT USAGE ON SEQUENCE wallet_entries_entry_id_seq TO {processor}')
    for table, privileges in GATEWAY_GRANTS.items():
        op.execute(f'GRANT {privileges} ON {table} TO {gateway}')
    for table in PROJECT_TABLES:
        op.execute(f'ALTER TABLE {table} ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE {table} FORCE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY {table}_owner ON {table} TO CURRENT_USER USING (true) WITH CHECK (true)')
        op.execute(f"CREATE POLICY {table}_gateway ON {table} FOR SELECT TO {gateway} USING ({SCOPE} = '*' OR project_id = {SCOPE})")


def downgrade() -> None:
    processor, gateway = _roles()
    for table in PROJECT_TABLES:
        for suffix in ('owner', 'gateway'):
            op.execute(f'DROP POLICY IF EXISTS {table}_{suffix} ON {table}')
        op.execute(f'ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE {table} DISABLE ROW LEVEL SECURITY')
    for role in (processor, gateway):
        op.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}')
        op.execute(f'REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}')
        op.execute(f'REVOKE USAGE ON SCHEMA public FROM {role}')
