"""Every explicit limit of the public contract, in one place.

A limit is a hard bound: input beyond it is rejected with ``ValidationError``
(or, for balances, ``BalanceLimitExceeded``); nothing is ever truncated.
"""

from typing import Final

MAX_PROJECT_ID_LEN: Final = 30
MAX_ASSET_ID_LEN: Final = 30
MAX_WALLET_ID_LEN: Final = 64
MAX_CUSTOMER_ID_LEN: Final = 254
MAX_HOLD_ID_LEN: Final = 64
MAX_REFERENCE_ID_LEN: Final = 128
MAX_NAME_LEN: Final = 200
MAX_DESCRIPTION_LEN: Final = 1000
MAX_ASSET_CODE_LEN: Final = 16

MAX_OPERATIONS_PER_TRANSACTION: Final = 100

# Metadata (transactions, holds, wallets, customers): string keys to string values, the client's
# own labels. Bounded so that a row stays small and the GIN index on transactions cheap.
MAX_METADATA_KEYS: Final = 16
MAX_METADATA_KEY_LEN: Final = 64
MAX_METADATA_VALUE_LEN: Final = 256
METADATA_KEY_PATTERN: Final = r"^[A-Za-z0-9_.:-]+$"

# Amounts: at most this many significant digits in total (integer + fraction part).
MAX_AMOUNT_DIGITS: Final = 30
# An amount string longer than this is rejected before it is parsed (cheap DoS guard;
# it leaves room for MAX_AMOUNT_DIGITS digits, a point and some leading zeros).
MAX_AMOUNT_STRING_LEN: Final = 64

# An asset's ``fractions`` is a power of ten: 1, 10, ..., 10**18. scale = log10(fractions).
MAX_FRACTIONS: Final = 10**18
MAX_SCALE: Final = 18
DEFAULT_FRACTIONS: Final = 100

# Balances are integers in minor units and must fit PostgreSQL NUMERIC(38, 0).
MAX_BALANCE_MINOR: Final = 10**38 - 1

# Reference IDs starting with this are the ledger's own (hold.expire's `~expire/{hold_id}`, the
# expiry's transaction); a client's reference ID may not start with it.
RESERVED_REFERENCE_PREFIX: Final = "~"

# Character class of the IDs a client may choose (projects, assets, wallets).
ID_PATTERN: Final = r"^[A-Za-z0-9._:@+-]+$"
ASSET_CODE_PATTERN: Final = r"^[A-Za-z0-9_-]+$"

# What the processor's parser accepts in a Kafka record (bounds on hostile input). A record
# beyond them is never parsed into a request: it is answered ValidationError when a top-level
# `reference_id` can be read, and dead-lettered otherwise.
# JSON nesting: a request needs 4 levels (request -> operations -> operation -> value).
MAX_JSON_DEPTH: Final = 32
# An integer literal longer than this is read as its digits (then refused by the field's type)
# instead of being turned into an int; Python refuses beyond 4,300 digits anyway.
MAX_INTEGER_LITERAL_DIGITS: Final = 64
# A `correlation_id` header is echoed on the result only up to this many bytes.
MAX_CORRELATION_ID_BYTES: Final = 1024
# The parts of an answer taken from a record that failed validation: a longer reference ID,
# or one that is not valid UTF-8 text, cannot be answered and the record is dead-lettered.
MAX_ANSWERABLE_REFERENCE_ID_LEN: Final = 1024
MAX_ECHOED_TYPE_LEN: Final = 64
