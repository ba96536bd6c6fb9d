"""The MQTT contract's JSON Schemas (draft 2020-12, `*.json` beside this file): package data, so the
installed `gateway-platform receive` validates with them from anywhere. docs/asyncapi.yaml refers to
these files; the cmd-*.json are written from gateway/commands/schemas.py and kept identical by a test."""

from importlib.resources import files
from pathlib import Path

SCHEMAS = Path(str(files(__name__)))
