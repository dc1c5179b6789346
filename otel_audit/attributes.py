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

ACTOR = "user.id"
ACTION = "audit.action"
OUTCOME = "audit.outcome"
RESOURCE = "audit.resource"
PRODUCER_INSTANCE = "audit.producer.instance"
PRODUCER_SEQ = "audit.producer.seq"
REQUIRED = (ACTOR, ACTION, OUTCOME)


def is_audit_event(event_name: str, attributes: Mapping[str, str]) -> bool:
    return (
        event_name == "audit"
        or event_name.startswith("audit.")
        or any(k.startswith("audit.") for k in attributes)
    )


def missing_fields(event_name: str, attributes: Mapping[str, str]) -> list[str]:
    """The required attributes an audit event lacks ([] for complete events and non-audit records)."""
    if attributes.get(ACTOR) and attributes.get(ACTION) and attributes.get(OUTCOME):
        return []  # complete, whatever it is: the common case, and the cheapest test
    if not is_audit_event(event_name, attributes):
        return []
    return [name for name in REQUIRED if not attributes.get(name)]
