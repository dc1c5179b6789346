"""The otel-audit sealer service: OTLP receivers, sealing pipeline, checkpointer, recovery;
and `cli`, the `otel-audit` command line above it all."""
