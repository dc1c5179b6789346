"""The otel-audit sealer service: OTLP receivers, sealing pipeline, checkpointer, recovery."""
