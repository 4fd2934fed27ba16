"""`python -m zmlx_dsl`: the zmlx-dsl command line (see cli.py)."""
import sys

from .cli import main

sys.exit(main())
