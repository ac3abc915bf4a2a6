"""`python -m servebench.cli` is `servebench`."""

import sys

from servebench.cli import main

sys.exit(main())
