"""``python -m lawfit``: the ``lawfit`` command, for environments without its script."""

import sys

from lawfit.cli import main

sys.exit(main())
