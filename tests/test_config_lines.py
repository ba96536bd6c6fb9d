"""The line index: tomllib gives no positions, so the config's FILE:LINE comes from a
second scan of the raw text. Each TOML shape a technician writes is pinned here."""

from __future__ import annotations

import tomllib

from gateway.config.lines import LineIndex
from gateway.config.source import syntax_problem

TEXT = '''\
# a comment with [brackets] and key = "value"
top = 1

[gateway]
id = "x"   # trailing comment
"quoted key" = 2
'literal key' = 3
a.b = 4
notes = """
[not.a.table]
fake = 1
"""
arr = [
  1,
  { x = 1, y = "a]}" },
  [2, 3],
]

[buses."rs485.main"]
type = "rtu"

[[sensors]]
name = "a"

[[sensors]]
name = "b"
rise = { amount = 1, within_s = 2 }

[[sensors.extra]]
q = 1

[[sensors]]

[[sensors.extra]]
q = 2
when = 1979-05-27 07:32:00Z
after = 1
'''


def index():
    tomllib.loads(TEXT)  # the scanner only ever sees text tomllib accepted
    return LineIndex(TEXT)


def test_tables_and_plain_keys():
    li = index()
    assert li.line(("top",)) == 2
    assert li.line(("gateway",)) == 4
    assert li.line(("gateway", "id")) == 5


def test_quoted_and_dotted_keys():
    li = index()
    assert li.line(("gateway", "quoted key")) == 6
    assert li.line(("gateway", "literal key")) == 7
    assert li.line(("gateway", "a", "b")) == 8
    assert li.line(("buses", "rs485.main", "type")) == 20


def test_multiline_strings_hide_what_looks_like_headers():
    li = index()
    assert li.line(("gateway", "notes")) == 9
    assert ("not", "a", "table") not in li
    assert li.line(("gateway", "arr")) == 13


def test_multiline_arrays_give_each_element_its_line():
    li = index()
    assert li.line(("gateway", "arr", 0)) == 14
    assert li.line(("gateway", "arr", 1, "y")) == 15
    assert li.line(("gateway", "arr", 2, 1)) == 16


def test_arrays_of_tables_are_counted_by_index():
    li = index()
    assert li.line(("sensors", 0)) == 22
    assert li.line(("sensors", 0, "name")) == 23
    assert li.line(("sensors", 1, "name")) == 26
    assert li.line(("sensors", 1, "extra", 0, "q")) == 30
    assert li.line(("sensors", 2)) == 32
    assert li.line(("sensors", 2, "extra", 0, "q")) == 35
    assert li.line(("sensors", 2, "extra", 0, "when")) == 36
    assert li.line(("sensors", 2, "extra", 0, "after")) == 37


def test_keys_inside_inline_tables_and_unwritten_keys_use_the_enclosing_line():
    li = index()
    assert li.line(("sensors", 1, "rise", "within_s")) == 27
    assert li.line(("sensors", 1, "rise", "level")) == 27  # not written: the enclosing key
    assert li.line(("sensors", 1, "poll_s")) == 25  # not written: the table header
    assert li.line(("nowhere",)) == 1


def test_syntax_problem_names_section_and_key():
    text = '[gateway]\nid = "a"\n\n[buses.rs485]\nbaudrate = 9600 9600\n'
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problem = syntax_problem("gw.toml", text, str(e))
    assert str(problem) == ("gw.toml:5: [buses.rs485] baudrate: invalid TOML: expected newline or end of "
                            "document after a statement (column 17)")


def test_syntax_problem_on_a_header_line():
    text = '[gateway]\nid = "a"\n[buses.rs485\n'
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problem = syntax_problem("gw.toml", text, str(e))
    assert problem.line == 3 and problem.section == "gateway"
    assert problem.message.startswith("invalid TOML: ")
