"""`python -m otel_audit`: the offline verifier (otel_audit/offline_cli.py)."""

import sys

from .offline_cli import main

sys.exit(main())
