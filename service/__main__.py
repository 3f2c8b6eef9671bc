"""``python -m service`` is ``ff-serve``."""

import sys

from service.cli import main

sys.exit(main())
