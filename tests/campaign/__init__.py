"""The attack campaign the project keeps (issue 12): a kill -9 soak and fuzzers over both
receivers, driven against a real `otel-audit serve`.

The logic lives here once; the short versions run in the test suite
(tests/test_campaign_soak.py, tests/test_campaign_fuzz.py) and the long ones by hand
(bench/soak.py, bench/fuzz.py). `clients` sends one request over either receiver and reads
the answer, `soak` kills and restarts a sealer under load, `fuzz` generates requests and
judges every answer, `store` reads back what was sealed once the sealer has stopped.
"""
