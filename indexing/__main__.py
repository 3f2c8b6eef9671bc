"""``python -m indexing`` is ``ff-index``."""

import sys

from indexing.cli import main

sys.exit(main())
