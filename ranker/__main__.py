"""``python -m ranker`` is ``ff-rank``."""

import sys

from ranker.cli import main

sys.exit(main())
