-- otel-audit schema, version 6: fewer, larger merges of the log.
--
-- The log is appended to all the time and read far less. Each INSERT makes a small part, and
-- MergeTree merges parts into larger ones in the background; merge_selector_base is about how
-- many parts of a similar size one merge takes (default 5). At 20, a row is rewritten about
-- half as often on its way into a large part (log base 20 instead of log base 5), which cut
-- the engine's merge work to about a third at sustained ingest (bench/bench_ingest.py). The
-- price is more parts alive at once, still far below parts_to_delay_insert.
ALTER TABLE otel_audit.logs MODIFY SETTING merge_selector_base = 20;
