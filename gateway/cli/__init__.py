"""The technician's commands: the entry point (`main`), the control-socket client side
(`daemon_calls`) and `scan`."""

from gateway.cli.main import main

__all__ = ["main"]
