"""`python -m federax.cli`: the `federax` command without the console script."""

import sys

from federax.cli.main import main

sys.exit(main())
