-- otel-audit schema, version 3: the authenticated producer of each record.
--
-- Derived from the entry's otel_audit.producer seal attribute (empty when the producer was
-- not authenticated, and for every record sealed before this column existed).
ALTER TABLE otel_audit.logs ADD COLUMN IF NOT EXISTS Producer LowCardinality(String) CODEC(ZSTD(1));
