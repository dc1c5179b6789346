-- otel-audit schema, version 5: retention (FINRA Rule 4511 asks for six years; default seven).
--
-- Every row of a month (the partition, toYYYYMM(SealedAt)) gets the same expiry: the start of
-- the next month plus seven years, so a partition expires whole, never part by part, and
-- ttl_only_drop_parts drops whole parts instead of rewriting them. The sealer signs a
-- checkpoint at every partition boundary, from which `verify` proves the rest of the log after
-- an expired prefix. Change the period with `otel-audit migrate --retention-years N`.
ALTER TABLE otel_audit.logs MODIFY TTL ${retention_ttl};
ALTER TABLE otel_audit.logs MODIFY SETTING ttl_only_drop_parts = 1;
