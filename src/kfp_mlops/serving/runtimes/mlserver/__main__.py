"""``python -m kfp_mlops.serving.runtimes.mlserver [FOLDER]``: serve a model with the v2 runtime (:mod:`.server`)."""

import sys

from kfp_mlops.serving.runtimes.mlserver.server import main

sys.exit(main())
