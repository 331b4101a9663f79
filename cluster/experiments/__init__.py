"""fleetsim.cluster.experiments: SLOs and goodput, sweeps, capacity search, comparison and reports."""
