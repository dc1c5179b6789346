"""The attribute names of an audit event: the one place they are defined.

OpenTelemetry semantic conventions where one exists, and the `audit.*` namespace where none
does (semantic-conventions has no adopted audit convention yet). Producers in any language
set these on the LogRecord; search, export and the readable bundle files read them.

| field    | where it lives                              | example            |
|----------|---------------------------------------------|--------------------|
| actor    | attribute `user.id` (semconv)               | trader-7           |
| action   | attribute `audit.action`                    | order.place        |
| outcome  | attribute `audit.outcome`                   | success / failure  |
| resource | attribute `audit.resource`                  | order/42           |
| event    | the LogRecord's event_name (EventName)      | audit.order.place  |
| service  | resource attribute `service.name` (semconv) | orders             |
| instance | attribute `audit.producer.instance`         | a UUID per process |
| sequence | attribute `audit.producer.seq` (int)        | 0, 1, 2, ...       |

An audit event is a record whose event name starts with `audit.` or that has an `audit.*`
attribute; it must carry an actor, an action and an outcome. Instance and sequence let the
sealer and `verify` report lost (gaps) and repeated (duplicates) events per producer process.
Other details go under `audit.<name>`; OpenTelemetry names (client.address, ...) as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

AUDIT_EVENT_NAME = "audit"  # an event name that is, or starts with `audit.`, marks an audit event
AUDIT_PREFIX = "audit."  # ... and so does any attribute in this namespace
ACTOR = "user.id"
ACTION = AUDIT_PREFIX + "action"
OUTCOME = AUDIT_PREFIX + "outcome"
RESOURCE = AUDIT_PREFIX + "resource"
PRODUCER_INSTANCE = AUDIT_PREFIX + "producer.instance"
PRODUCER_SEQ = AUDIT_PREFIX + "producer.seq"
REQUIRED = (ACTOR, ACTION, OUTCOME)


def is_audit_event(event_name: str, attributes: Mapping[str, str]) -> bool:
    """Whether a record is an audit event (module docstring); `is_audit_event_sql` is its SQL form."""
    return (
        event_name == AUDIT_EVENT_NAME
        or event_name.startswith(AUDIT_PREFIX)
        or any(k.startswith(AUDIT_PREFIX) for k in attributes)
    )


def missing_fields(event_name: str, attributes: Mapping[str, str]) -> list[str]:
    """The required attributes an audit event lacks ([] for complete events and non-audit records).

    An empty value counts as missing, as in `incomplete_audit_event_sql`, its SQL form."""
    if attributes.get(ACTOR) and attributes.get(ACTION) and attributes.get(OUTCOME):
        return []  # complete, whatever it is: the common case, and the cheapest test
    if not is_audit_event(event_name, attributes):
        return []
    return [name for name in REQUIRED if not attributes.get(name)]


# The same two rules as ClickHouse expressions over a stored row (otel_audit.logs: EventName
# String, LogAttributes Map(String, String), where a missing key reads as ''), for reports that
# ask the engine about the whole log (backend/producer_report.py). Built here from the same names so
# the SQL and Python cannot drift; tests/test_attributes_sql.py checks both on real chDB.


def is_audit_event_sql(event_name: str = "EventName", attributes: str = "LogAttributes") -> str:
    """`is_audit_event` in SQL."""
    return (
        f"({event_name} = '{AUDIT_EVENT_NAME}' OR startsWith({event_name}, '{AUDIT_PREFIX}') "
        f"OR arrayExists(k -> startsWith(k, '{AUDIT_PREFIX}'), mapKeys({attributes})))"
    )


def incomplete_audit_event_sql(event_name: str = "EventName", attributes: str = "LogAttributes") -> str:
    """`missing_fields(...) != []` in SQL: an audit event lacking an actor, action or outcome."""
    lacking = " OR ".join(f"{attributes}['{name}'] = ''" for name in REQUIRED)
    return f"({is_audit_event_sql(event_name, attributes)} AND ({lacking}))"
