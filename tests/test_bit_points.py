"""FC01/FC02 bit points: the shipped contact, sounder and relay/DI profiles load, a rule `equals = { red
= 1 }` on a water-immersion contact sounds the siren when the contact closes on a real simulated DI
module (Modbus TCP) read through the bus loop, and a bit type on a register is refused."""

from __future__ import annotations

import pytest

from drivers.sim.modbus_device import SimBus
from gateway.acquire import Acquisition
from gateway.config import ConfigError, load_config
from tests.ptys import wait_until

SITE = '''
[gateway]
id = "bits"
data_dir = "./var"

[buses.plant]
type = "tcp"
host = "127.0.0.1"
port = {port}

[[sensors]]
name = "b2-immersion"
bus = "plant"
unit = 3
profile = "water-immersion-contact"
poll_s = 0.05

[[sensors]]
name = "pump-room-module"
bus = "plant"
unit = 4
profile = "relay-di-8ch"
poll_s = 0.05

[[sensors]]
name = "lobby-call-point"
bus = "plant"
unit = 5
profile = "manual-call-point"
poll_s = 0.05

[outputs.garage-siren]
pin = 17
pattern = { red = "steady" }

[[rules]]
sensor = "b2-immersion"
point = "wet"
equals = { red = 1 }
sound = ["garage-siren"]
'''


def site(port: int) -> str:
    return SITE.replace("{port}", str(port))


@pytest.mark.parametrize("name", ["water-immersion-contact", "pressure-switch-contact", "manual-call-point",
                                  "rs485-sound-light-alarm", "relay-di-8ch"])
def test_shipped_bit_profiles_load(tmp_path, name):
    (tmp_path / "g.toml").write_text(site(502).replace("water-immersion-contact", name).split("[[rules]]")[0])
    cfg = load_config(str(tmp_path / "g.toml"))
    points = cfg.sensors["b2-immersion"].profile.points
    assert all(p.type == "bit" and p.function in (1, 2) for p in points)


def test_a_contact_closing_is_read_and_decided(tmp_path):
    with SimBus.tcp("127.0.0.1", 0) as sim:
        (tmp_path / "g.toml").write_text(site(sim.port))
        cfg = load_config(str(tmp_path / "g.toml"))
        for unit, name in ((3, "b2-immersion"), (4, "pump-room-module"), (5, "lobby-call-point")):
            sim.add_device(unit, cfg.sensors[name].profile)
        got = []
        acq = Acquisition(cfg, got.append)
        acq.start()
        try:
            latest = lambda s, p: next((r for r in reversed(got) if r.sensor == s and r.point == p), None)  # noqa: E731
            wait_until(lambda: latest("b2-immersion", "wet") is not None, 5)
            assert latest("b2-immersion", "wet").value == 0 and latest("b2-immersion", "wet").quality == "good"
            sim.set_value(3, "wet", 1)
            sim.set_bits(4, "inputs", {2: True})
            sim.set_bits(4, "coils", {7: True})
            wait_until(lambda: latest("b2-immersion", "wet").value == 1, 5, what="contact closed")
            # coils (FC01) and inputs (FC02) are two requests of one poll: wait for a poll after both changes
            wait_until(lambda: latest("pump-room-module", "in3").value == 1
                       and latest("pump-room-module", "relay8").value == 1, 5)
            assert latest("pump-room-module", "in1").value == 0 and latest("pump-room-module", "relay1").value == 0
            sim.behave(5, "dead")
            wait_until(lambda: latest("lobby-call-point", "pressed").quality == "fault", 5)
            assert latest("lobby-call-point", "pressed").value is None  # a timeout is never a 0
        finally:
            acq.stop()
    # the rule decides on it like any point
    from gateway.decide import AlarmBook

    book = AlarmBook(cfg.rules)
    r = latest("b2-immersion", "wet")
    assert [t.level for t in book.feed(r)] == ["red"]


def test_a_bit_type_on_a_register_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nkind = "modbus"\n[[points]]\nname = "x"\nregister = 0\nfunction = 3\ntype = "bit"\n')
    (tmp_path / "g.toml").write_text(site(502).replace('"water-immersion-contact"', f'"{bad}"').split("[[rules]]")[0])
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "g.toml"))
    assert 'type = "bit" goes with function = 1 (coil) or 2' in str(e.value)

