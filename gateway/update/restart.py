"""Restarting the daemon into the release `current` points at, without a stop systemd can see.

The launcher puts its own command line in $GATEWAY_LAUNCHER (JSON) before it execs the daemon. On
SIGUSR2 the daemon stops cleanly (alarm state saved, relays off, outbox closed), tells systemd
RELOADING=1, and exec()s that command line: the launcher runs again in the same process, counts the
start of the release on trial, forks the health gate and execs the new release, which says READY=1.
The relays are undriven only from the old daemon's stop to the new one's restore (bench/update.py
measures it), not for RestartSec= as well.

A daemon not started by the launcher (no $GATEWAY_LAUNCHER) just exits: systemd's Restart=always
starts it again. A daemon from before this feature dies of SIGUSR2's default action: the same."""

from __future__ import annotations

import json
import logging
import os
import sys

ENV = "GATEWAY_LAUNCHER"
log = logging.getLogger(__name__)


def reexec_through_launcher() -> None:
    raw = os.environ.get(ENV)
    if not raw:
        return
    try:
        argv = json.loads(raw)
        assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
    except (ValueError, AssertionError):
        print(f"{ENV} is not a JSON list of arguments: exiting for systemd to restart", file=sys.stderr)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)
