"""ClickHouse storage for otel-audit: schema, the store client, readers for verify."""
