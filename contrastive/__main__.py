"""``python -m contrastive`` is the ``contrastive`` command."""

import sys

from contrastive.cli import main

sys.exit(main())
