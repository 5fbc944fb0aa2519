"""Entry point of `python3 -m scripts.deploy`."""

import sys

from .cli import main

sys.exit(main())
