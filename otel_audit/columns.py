"""Column hashes: how `verify` checks every stored column without decoding every entry.

Decoding an entry and rebuilding its ~20 derived columns costs Python some 10 us per record;
ClickHouse can hash the stored columns of a record in well under 1 us. So right after each
INSERT the sealer asks the store for the hash of each new row's derived columns, and every
checkpoint signs the SHA-256 of those hashes over the records it adds (the ``otel-audit
columns`` extension). `verify` recomputes the same hashes from what is stored now; where a
commitment does not match, it decodes the entries of that range to name the Seq and columns.

A column hash is SHA-256 over the row's DERIVED_COLUMNS in ClickHouse's RowBinary encoding
(``formatRowNoNewline('RowBinary', ...)``): a byte-exact, documented wire format that does
not change between ClickHouse versions, so a hash taken today still matches in seven years.
Producer, added after the first release, is appended as raw bytes after the RowBinary row
(which is self-delimiting): empty for every row sealed before it existed, so those rows hash
exactly as they did when their checkpoints signed them.
"""

from __future__ import annotations

from .entry import DERIVED_COLUMNS

_FIRST_RELEASE = [name for name in DERIVED_COLUMNS if name != "Producer"]
COLUMN_HASH_SQL = f"SHA256(concat(formatRowNoNewline('RowBinary', {', '.join(_FIRST_RELEASE)}), Producer))"
