"""`python -m fleetsim ...` is the `fleetsim` command."""
import sys

from fleetsim.cluster.cli import main

sys.exit(main())
