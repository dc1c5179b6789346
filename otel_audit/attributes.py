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
"""

from __future__ import annotations

ACTOR = "user.id"
ACTION = "audit.action"
OUTCOME = "audit.outcome"
RESOURCE = "audit.resource"
