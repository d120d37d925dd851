"""``python -m heatcore``: the command line (see :mod:`heatcore.cli`)."""

import sys

from .cli import main

sys.exit(main())
