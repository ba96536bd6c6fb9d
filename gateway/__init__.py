"""community-gateway: the application side of the edge gateway (config, acquire, decide, act, record, sync)."""

__version__ = "0.1.0"
