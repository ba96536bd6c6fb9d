"""`gateway sim`: simulated devices for every sensor of a config, driven by scenarios."""
