"""ClickHouse's error codes, and the one function that turns a driver error into ours.

clickhouse-connect gives every error the engine reports its numeric code as `exc.code`
(from the X-ClickHouse-Exception-Code header over HTTP; parsed from the engine's own
"Code: N." over chDB); a failure with no code (a refused connection, a reset, a timeout)
comes as OperationalError or OSError. The class is read from the code alone, never from
the message text.

| class | what it means | retry? |
| --- | --- | --- |
| StoreUnavailableError | an outage: no answer, a missing table, a cancelled query, any code not below | yes |
| StoreDiskFullError | the engine's disk is full (NOT_ENOUGH_SPACE) | yes, once space is freed |
| StoreDamagedError | a read met a part it cannot read (files empty or cut short) | yes; its rows are lost |
| StoreStatementError | the statement is wrong: a programming error | no |
| StoreReadOnlyError | this session may not write (readonly) or lacks the grant | no |
| StoreDataError | an INSERT's rows hold a value the store cannot hold (backend/limits.py) | no |

A data code means "these rows are bad" only for the rows an INSERT sends, and a damaged
code means "a part is damaged" only for a read: elsewhere each is an outage, as an unknown
code is (a newer engine's code must not turn an outage into a refusal that loses records).
Codes are src/Common/ErrorCodes.cpp's; tests/test_errors.py checks every name here against
the engine's errorCodeToName().
"""

from __future__ import annotations

from clickhouse_connect.driver.exceptions import ProgrammingError

from otel_audit.errors import (
    StoreDamagedError,
    StoreDataError,
    StoreDiskFullError,
    StoreError,
    StoreReadOnlyError,
    StoreStatementError,
    StoreUnavailableError,
)

# The codes the user's SQL (backend/user_sql.py) answers in its own words.
BAD_ARGUMENTS = 36
SYNTAX_ERROR = 62
TIMEOUT_EXCEEDED = 159
READONLY = 164
MEMORY_LIMIT_EXCEEDED = 241
TOO_MANY_ROWS_OR_BYTES = 396
ACCESS_DENIED = 497

# code -> (the engine's name for it, our class)
CODES: dict[int, tuple[str, type[StoreError]]] = {
    # the rows an INSERT sends are bad: a value the engine cannot parse, convert or hold
    6: ("CANNOT_PARSE_TEXT", StoreDataError),
    26: ("CANNOT_PARSE_QUOTED_STRING", StoreDataError),
    27: ("CANNOT_PARSE_INPUT_ASSERTION_FAILED", StoreDataError),
    38: ("CANNOT_PARSE_DATE", StoreDataError),
    41: ("CANNOT_PARSE_DATETIME", StoreDataError),
    53: ("TYPE_MISMATCH", StoreDataError),
    69: ("ARGUMENT_OUT_OF_BOUND", StoreDataError),
    70: ("CANNOT_CONVERT_TYPE", StoreDataError),
    72: ("CANNOT_PARSE_NUMBER", StoreDataError),
    117: ("INCORRECT_DATA", StoreDataError),
    128: ("TOO_LARGE_ARRAY_SIZE", StoreDataError),
    131: ("TOO_LARGE_STRING_SIZE", StoreDataError),
    190: ("SIZES_OF_ARRAYS_DONT_MATCH", StoreDataError),
    321: ("VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE", StoreDataError),
    349: ("CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN", StoreDataError),
    407: ("DECIMAL_OVERFLOW", StoreDataError),
    # data the engine holds but cannot read (as a full disk leaves a part)
    32: ("ATTEMPT_TO_READ_AFTER_EOF", StoreDamagedError),
    33: ("CANNOT_READ_ALL_DATA", StoreDamagedError),
    40: ("CHECKSUM_DOESNT_MATCH", StoreDamagedError),
    228: ("BAD_SIZE_OF_FILE_IN_DATA_PART", StoreDamagedError),
    246: ("CORRUPTED_DATA", StoreDamagedError),
    # the statement is wrong
    8: ("THERE_IS_NO_COLUMN", StoreStatementError),
    16: ("NO_SUCH_COLUMN_IN_TABLE", StoreStatementError),
    BAD_ARGUMENTS: ("BAD_ARGUMENTS", StoreStatementError),
    42: ("NUMBER_OF_ARGUMENTS_DOESNT_MATCH", StoreStatementError),
    43: ("ILLEGAL_TYPE_OF_ARGUMENT", StoreStatementError),
    44: ("ILLEGAL_COLUMN", StoreStatementError),
    46: ("UNKNOWN_FUNCTION", StoreStatementError),
    47: ("UNKNOWN_IDENTIFIER", StoreStatementError),
    50: ("UNKNOWN_TYPE", StoreStatementError),
    SYNTAX_ERROR: ("SYNTAX_ERROR", StoreStatementError),
    63: ("UNKNOWN_AGGREGATE_FUNCTION", StoreStatementError),
    73: ("UNKNOWN_FORMAT", StoreStatementError),
    80: ("INCORRECT_QUERY", StoreStatementError),
    115: ("UNKNOWN_SETTING", StoreStatementError),
    184: ("ILLEGAL_AGGREGATION", StoreStatementError),
    215: ("NOT_AN_AGGREGATE", StoreStatementError),
    456: ("UNKNOWN_QUERY_PARAMETER", StoreStatementError),
    457: ("BAD_QUERY_PARAMETER", StoreStatementError),
    # this session may not do it
    READONLY: ("READONLY", StoreReadOnlyError),
    ACCESS_DENIED: ("ACCESS_DENIED", StoreReadOnlyError),
    # the engine's disk is full
    243: ("NOT_ENOUGH_SPACE", StoreDiskFullError),
    # outages named for the reader (any code not in this table is one too)
    60: ("UNKNOWN_TABLE", StoreUnavailableError),
    81: ("UNKNOWN_DATABASE", StoreUnavailableError),
    TIMEOUT_EXCEEDED: ("TIMEOUT_EXCEEDED", StoreUnavailableError),
    MEMORY_LIMIT_EXCEEDED: ("MEMORY_LIMIT_EXCEEDED", StoreUnavailableError),
    242: ("TABLE_IS_READ_ONLY", StoreUnavailableError),  # a replica lost its Keeper session
    394: ("QUERY_WAS_CANCELLED", StoreUnavailableError),
}


def code_of(exc: BaseException) -> int | None:
    """The engine's error code that clickhouse-connect gives the exception, or None."""
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def error_class(exc: BaseException, *, inserting: bool = False) -> type[StoreError]:
    """Our class for a failed store call (a clickhouse-connect exception or an OSError).

    `inserting`: the call sent rows (then a data code refuses them; a damaged code is an
    outage). A failure with no code is an outage, except the driver's own ProgrammingError
    (a statement it refused to send, e.g. a parameter it cannot bind)."""
    code = code_of(exc)
    if code is None:
        return StoreStatementError if isinstance(exc, ProgrammingError) else StoreUnavailableError
    cls = CODES.get(code, ("", StoreUnavailableError))[1]
    if (cls is StoreDataError and not inserting) or (cls is StoreDamagedError and inserting):
        return StoreUnavailableError
    return cls


def store_error(exc: BaseException, message: str, *, inserting: bool = False) -> StoreError:
    """The exception `error_class` names, with `message` (raise it `from exc`)."""
    return error_class(exc, inserting=inserting)(message)
