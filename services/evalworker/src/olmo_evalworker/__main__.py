"""``python -m olmo_evalworker`` is ``olmo-eval``."""

import sys

from olmo_evalworker.cli import main

sys.exit(main())
