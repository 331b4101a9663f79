"""Backends: where the instances run. Both expose the same calls (see `local.LocalBackend`)."""
