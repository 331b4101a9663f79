"""`python -m fleetsim.cluster.cli` is the `fleetsim` command."""
import sys

from fleetsim.cluster.cli import main

sys.exit(main())
