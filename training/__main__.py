"""``python -m training``: the ``ff-train`` command."""

import sys

from training.cli import main

sys.exit(main())
