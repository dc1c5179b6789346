"""otel-audit: tamper-evident audit logging on OpenTelemetry and ClickHouse.

The modules here are the core library. `merkle`, `chain`, `note`, `checkpoint`, `entry`,
`columns` and `derivation` are pure (no I/O, no clocks) so the offline verifier can reuse them; `cli` is the
edge that wires the store (`backend`) and the service (`sealer`) together.
"""
