"""config/README.md is the technician's reference: it must name exactly the keys the
validator accepts (gateway.config.schema.KEYS), and every point of every shipped profile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config.profiles import SHIPPED_PROFILES
from gateway.config.schema import KEYS

README = Path(__file__).resolve().parents[1] / "config" / "README.md"
_MARKER = re.compile(r"^<!-- (keys|profile): (\S+) -->$")
_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|")


def documented(kind: str) -> dict[str, set[str]]:
    """{marker name: first-column names of the table that follows the marker}."""
    found: dict[str, set[str]] = {}
    current = None
    for line in README.read_text().splitlines():
        m = _MARKER.match(line)
        if m:
            current = m.group(2) if m.group(1) == kind else None
            if current is not None:
                assert current not in found, f"{current} documented twice"
                found[current] = set()
            continue
        row = _ROW.match(line)
        if current is not None and row:
            found[current].add(row.group(1))
    return found


def test_every_section_of_the_schema_is_documented_and_nothing_else():
    sections = {"" if name == "top" else name for name in documented("keys")}
    assert sections == set(KEYS)


@pytest.mark.parametrize("section", sorted(KEYS))
def test_documented_keys_match_the_validator(section):
    keys = documented("keys")["top" if section == "" else section]
    assert keys == set(KEYS[section])


@pytest.mark.parametrize("path", sorted(SHIPPED_PROFILES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_profile_point_is_documented(path):
    import tomllib

    points = {p["name"] for p in tomllib.loads(path.read_text())["points"]}
    assert documented("profile").get(path.stem) == points


def test_the_complete_example_in_the_reference_is_valid(tmp_path):
    from gateway.config import load_config

    text = README.read_text()
    example = text[text.index("```toml\n") + len("```toml\n"):]
    example = example[:example.index("```")]
    path = tmp_path / "gateway.toml"
    path.write_text(example)
    cfg = load_config(str(path))
    assert cfg.rules[0].rise.within_s == 600 and len(cfg.sensors) == 4


def test_every_range_of_the_schema_is_written_in_the_reference():
    """A range changed in schema.RANGES and not in config/README.md fails here."""
    from gateway.config.schema import RANGES
    from gateway.config.tables import span

    rows: dict[tuple[str, str], str] = {}
    current = None
    for line in README.read_text().splitlines():
        m = _MARKER.match(line)
        if m:
            current = ("" if m.group(2) == "top" else m.group(2)) if m.group(1) == "keys" else None
            continue
        row = _ROW.match(line)
        if current is not None and row:
            rows[current, row.group(1)] = line
    for section, keys in RANGES.items():
        assert section in KEYS
        for key, (lo, hi) in keys.items():
            assert key in KEYS[section], (section, key)
            assert span(lo, hi) in rows[section, key], f"config/README.md [{section}] {key}: write {span(lo, hi)}"
