"""`python -m mnistlab`: the same as the `mnistlab` command."""

import sys

from .cli import main

sys.exit(main())
