"""fleetsim.cluster: router, policies, backends, metrics, config loading and the CLI."""
