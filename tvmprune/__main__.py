"""``python -m tvmprune ...`` runs the command line (the same as the ``tvmprune`` script)."""

import sys

from .cli import main

sys.exit(main())
