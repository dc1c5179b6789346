"""otel-audit: tamper-evident audit logging on OpenTelemetry and ClickHouse.

The modules here are the core library. `merkle`, `chain`, `note`, `checkpoint`, `entry`,
`columns` and `derivation` are pure (no I/O, no clocks) so the offline verifier can reuse them;
`offline_cli` is the verifier's command line (`otel-audit-verify`, `python -m otel_audit`).
This package imports nothing of `backend` or `sealer`, and only `sdk` needs the OTel SDK (the
`sdk` extra). The full `otel-audit` command line is `sealer/cli`.
"""
