"""``python -m lookout_fleet``: the same as the ``lookout-fleet`` command."""

import sys

from .cli import main

sys.exit(main())
