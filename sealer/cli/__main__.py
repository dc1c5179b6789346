"""`python -m sealer.cli`: the `otel-audit` command line."""

import sys

from . import main

sys.exit(main())
