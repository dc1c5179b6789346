"""otel-audit: tamper-evident audit logging on OpenTelemetry and ClickHouse.

The core library, and all the offline verifier needs. It imports nothing of `backend` or
`sealer`; only `sdk` needs the OTel SDK (the `sdk` extra). The map:

- the math and the formats, pure (no I/O, no clocks): `merkle` (RFC 6962 hashing, the compact
  range), `proof` (RFC 9162 inclusion and consistency proofs), `chain` (the hash chain),
  `note` (C2SP signed notes, Ed25519 keys), `checkpoint` (C2SP checkpoints, and
  `open_checkpoint`, the one way to open a signed one), `tlog_proof` (C2SP tlog-proof),
  `varint`, `cosignature` (C2SP tlog-cosignature), `tlog_witness` (the tlog-witness request
  and a witness's decision), `witness_policy` (C2SP tlog-policy), `rotation` (key handovers);
- a record: `attributes` (an audit event's attribute names), `entry` (the leaf bytes),
  `columns` (the log's columns, defined once), `derivation` (their values from a record),
  `value_strings` (OTLP values as the Collector exporter stores them);
- checking: `verify` (one log, fed with stored data), `bundle` (evidence bundles),
  `readable` (records as JSON lines and HTML), `anchors` (checkpoints kept outside the
  database), `witnessed` (cosigned checkpoints beside them, against a policy), `timestamp`
  (RFC 3161 tokens: requests and checks);
- `errors` (the one exception hierarchy), `sdk` (audit events from Python services), and
  `offline_cli`, the verifier's command line (`otel-audit-verify`, `python -m otel_audit`).
  The full `otel-audit` command line is `sealer/cli`.
"""
