"""``python -m service.cli``: the ``softsensor`` console script without an installed entry point."""

import sys

from service.cli.main import main

sys.exit(main())
