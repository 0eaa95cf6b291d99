"""``python -m ffmrec.federated.engines.flower.deploy``: see :func:`ffmrec.federated.engines.flower.deploy.cli.main`."""

import sys

from ffmrec.federated.engines.flower.deploy.cli import main

sys.exit(main())
