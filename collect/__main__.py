import sys

from collect.cli import main

sys.exit(main())
