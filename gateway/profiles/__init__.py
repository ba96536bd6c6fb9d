"""The shipped sensor profiles (`*.toml` beside this file): package data, installed with the wheel.

Found through importlib.resources, never through the source tree: on a Pi the package is a wheel in
/opt/community-gateway/venv with no checkout beside it (issue 10)."""

from importlib.resources import files
from pathlib import Path

# pip installs wheels unpacked, so this is a real directory; a zip import would give a path that is
# not one, and the config check then says the shipped profiles are missing.
SHIPPED = Path(str(files(__name__)))
