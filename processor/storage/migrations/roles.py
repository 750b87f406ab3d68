"""The database roles migrations grant to (revisions from 0009 on; 0005 and 0006 keep their own
copy, as migrations are history): names checked before they go into SQL."""

import os
import re


def _role(setting: str, default: str) -> str:
    role = os.environ.get(setting, default)
    # Folded to lower case by GRANT but compared as written in pg_roles: lower case only.
    if re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role) is None:
        raise ValueError(f"{setting}={role!r}: a database role name here is lower-case letters, digits and _")
    return role


def database_roles() -> tuple[str, str]:
    """(the processor's role, the gateway's role)."""
    return _role("CLOUDWALLET_PROCESSOR_DB_ROLE", "cloudwallet_processor"), _role("CLOUDWALLET_GATEWAY_DB_ROLE", "cloudwallet_gateway")
