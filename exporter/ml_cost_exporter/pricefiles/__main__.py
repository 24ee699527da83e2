"""`python -m ml_cost_exporter.pricefiles update ...`: the standalone form of `mlcost pricing update`."""

import sys

from ml_cost_exporter.pricefiles.command import main

sys.exit(main())
