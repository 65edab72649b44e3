"""``python -m kfp_mlops.cli``: the ``kfp-mlops`` command."""

import sys

from kfp_mlops.cli import main

sys.exit(main())
