"""The red-team suite (issue 12): each test is one attack, written to fail before its fix.
tests/ itself goes on sys.path so the shared helpers (ptys, daemonkit) import when this
directory is run alone."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parents[1])
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)
