"""``python -m raftkv`` runs the ``raftkv`` command."""

import sys

from raftkv.cli import main

sys.exit(main())
