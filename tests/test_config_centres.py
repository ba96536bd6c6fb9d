"""[gb26875] and [sl651] exactly as issue 15 writes them, and their ranges."""

from __future__ import annotations

from tests.test_config import ISSUE_EXAMPLE, problems_of, site, write  # noqa: F401 - site is a fixture

from gateway.config import load_config

ISSUE_15 = '''
[gb26875]
host = "127.0.0.1"
port = 9000
source = "000000000001"
destination = "000000000000"

[sl651]
host = "127.0.0.1"
port = 9001
station = "0012345678"
centre = 1
password = "1234"
'''


def test_issue_15_tables_load_exactly_as_written(site):  # noqa: F811
    cfg = load_config(str(write(site, ISSUE_EXAMPLE + ISSUE_15)))
    gb, sl = cfg.gb26875, cfg.sl651
    assert (gb.host, gb.port, gb.source, gb.destination) == ("127.0.0.1", 9000, "000000000001", "000000000000")
    assert (gb.confirm_timeout_s, gb.resends) == (10.0, 3)  # the standard's timeout and resend count
    assert (sl.host, sl.port, sl.station, sl.centre, sl.password) == ("127.0.0.1", 9001, "0012345678", 1, "1234")
    assert (sl.resends, sl.keepalive_s, sl.station_type) == (2, 40, "48")


def test_centre_tables_are_optional(site):  # noqa: F811
    cfg = load_config(str(write(site, ISSUE_EXAMPLE)))
    assert cfg.gb26875 is None and cfg.sl651 is None


def test_bad_addresses_and_ranges_are_reported_with_their_lines(site):  # noqa: F811
    bad = (ISSUE_15.replace('"000000000001"', '"12345"').replace('station = "0012345678"', 'station = "12AB"')
           .replace("centre = 1", "centre = 300").replace('password = "1234"', 'password = "xyz"')
           .replace("port = 9000", "port = 9000\nresends = 11\nzone = -1"))
    problems = "\n".join(problems_of(write(site, ISSUE_EXAMPLE + bad)))
    for fragment in ("[gb26875] source: must be 12 hex digits", "[gb26875] resends:", "[gb26875] zone:",
                     "[sl651] station: must be 10 decimal digits", "[sl651] centre:", "[sl651] password:"):
        assert fragment in problems, problems


def test_unknown_key_gets_did_you_mean(site):  # noqa: F811
    problems = "\n".join(problems_of(write(site, ISSUE_EXAMPLE + ISSUE_15.replace("centre = 1", "centre = 1\ncenter = 1"))))
    assert "[sl651] center" in problems and "centre" in problems


def test_summary_names_both_centres(site):  # noqa: F811
    from gateway.config import summary

    text = summary(load_config(str(write(site, ISSUE_EXAMPLE + ISSUE_15))))
    assert "gb26875   fire centre 127.0.0.1:9000, device 000000000001 -> centre 000000000000" in text
    assert "sl651     flood office 127.0.0.1:9001, station 0012345678 -> centre 1" in text
