"""Two centres on one outbox, each with its own cursor, over real TCP: a fire centre that never
confirms holds back neither the flood office nor the MQTT side of the outbox (events.state), and
housekeeping keeps the alarm the fire centre still owes a confirmation for."""

from __future__ import annotations

from gateway.config.centres import Sl651
from gateway.platform.gb26875_centre import Gb26875Centre
from gateway.platform.sl651_centre import Sl651Centre
from gateway.record.cursors import DeliveryCursor
from gateway.sync.sl651.uplink import CARRIED as SL_CARRIED, Sl651Uplink
from tests.ptys import wait_until
from tests.test_gb26875_uplink import Rig as GbRig, smoke_alarm
from tests.test_sl651 import level_alarm


def test_a_stalled_fire_centre_holds_back_neither_the_flood_office_nor_mqtt(tmp_path):
    with Gb26875Centre(address="000000015b38", device="000000000379", stall=-1) as gb_c, Sl651Centre() as sl_c:
        gb = GbRig(tmp_path, gb_c.port)  # owns the outbox and the recorder both uplinks share
        cfg = Sl651(host="127.0.0.1", port=sl_c.port, station="0012345678", centre=1, password="1234",
                    confirm_timeout_s=0.3, timed_report_s=0, hourly=False)
        cursor = DeliveryCursor(gb.outbox, "sl651", SL_CARRIED, writer=gb.recorder.call, replay_per_s=1000)
        sl = Sl651Uplink(cfg, cursor, "garage-b2-water", backoff_initial_s=0.1, backoff_max_s=0.3)
        try:
            gb.uplink.start()
            sl.start()
            fire = gb.add("alarm", smoke_alarm())
            flood = gb.add("alarm", level_alarm(45.0))
            wait_until(lambda: sl_c.confirmed("extra"), 5, what="the flood office confirmed its 加报")
            gb.outbox.mark_delivered([fire, flood])  # and MQTT has both (PUBACK)
            wait_until(lambda: gb.faults("unconfirmed"), 10, what="the fire centre's silence declared")
            gb.outbox.housekeep()
            left = [r[0] for r in gb.outbox.query("SELECT seq FROM events WHERE type = 'alarm'")]
            assert fire in left  # still owed to the fire centre
            assert not gb_c.confirmed() and len(sl_c.confirmed("extra")) == 1
            gb_c.stall = 0
            wait_until(lambda: gb_c.confirmed(), 10, what="the fire centre confirms after all")
        finally:
            sl.stop()
            gb.close()
