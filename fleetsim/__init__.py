"""fleetsim: a fast, deterministic simulator of LLM serving fleets."""
