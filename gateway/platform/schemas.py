"""The contract as code: the JSON Schemas of gateway/contract (package data), loaded into validators
(draft 2020-12)."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.contract import SCHEMAS
from gateway.errors import GatewayError

DEFAULT_DIR = SCHEMAS
EVENT_TYPES = ("alarm", "fault", "telemetry", "status", "audit", "gap")


class Contract:
    """Validators for every payload the gateway publishes. `errors(kind, payload)` lists what is
    wrong (empty: valid); kind is an event type, "birth", "offline" or "presence"."""

    def __init__(self, schema_dir: str | Path | None = None):
        try:
            import jsonschema
            from referencing import Registry, Resource
        except ImportError as e:  # pragma: no cover - jsonschema is in the test extra
            raise GatewayError("the platform receiver needs jsonschema: pip install 'community-gateway[test]'") from e
        self.dir = Path(schema_dir or DEFAULT_DIR)
        if not self.dir.is_dir():
            raise GatewayError(f"schema directory {self.dir} not found (use --schemas DIR)")
        paths = sorted(self.dir.glob("*.json"))
        if not paths:
            hint = (" (the installed package lacks its package data: reinstall it from a wheel built by "
                    "`make wheels`)" if self.dir == DEFAULT_DIR else "")
            raise GatewayError(f"no JSON Schemas (*.json) in {self.dir}{hint}")
        schemas = {}
        for path in paths:
            try:
                schemas[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise GatewayError(f"schema {path}: {e}") from e
        registry = Registry().with_resources(
            (s["$id"], Resource.from_contents(s)) for s in schemas.values())
        self.schemas = schemas
        self._validators = {}
        for name, schema in schemas.items():
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validators[name] = cls(schema, registry=registry, format_checker=cls.FORMAT_CHECKER)

    def errors(self, kind: str, payload) -> list[str]:
        validator = self._validators.get(kind)
        if validator is None:
            return [f"no schema for {kind!r}"]
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in sorted(validator.iter_errors(payload), key=lambda e: list(e.absolute_path))]
