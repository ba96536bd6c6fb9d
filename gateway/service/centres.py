"""Wiring of the city-protocol uplinks (`[gb26875]`, `[sl651]`): each gets its own delivery cursor
over the daemon's outbox, marks through the daemon's Recorder, and runs on its own thread beside MQTT.
Nothing here is on the safety path: a centre that hangs, floods or lies costs its own thread only."""

from __future__ import annotations

import logging

from gateway.record.cursors import DeliveryCursor, writer_of

log = logging.getLogger(__name__)


def level_sensor(cfg) -> str | None:
    """The water-level sensor SL 651 reports: `[sl651] sensor`, else the first level sensor."""
    from gateway.sync.gb26875.mapping import LEVEL, kind_of

    if cfg.sl651.sensor:
        return cfg.sl651.sensor
    return next((n for n, s in cfg.sensors.items() if kind_of(s.profile.name) == LEVEL), None)


def start_centres(cfg, outbox, recorder, *, record, latest) -> dict:
    """{name: uplink} for the configured centres, started. `record(type, fields)` stores an event,
    `latest(sensor)` is the sensor's newest Reading of a length (or None)."""
    uplinks: dict = {}
    if outbox is None or (cfg.gb26875 is None and cfg.sl651 is None):
        return uplinks
    writer = writer_of(recorder)
    if cfg.gb26875 is not None:
        from gateway.sync.gb26875.mapping import Gb26875Mapping
        from gateway.sync.gb26875.uplink import CARRIED, Gb26875Uplink

        g = cfg.gb26875
        cursor = DeliveryCursor(outbox, "gb26875", CARRIED, writer=writer, replay_per_s=g.replay_per_s)
        mapping = Gb26875Mapping({n: s.profile.name for n, s in cfg.sensors.items()}, zone=g.zone,
                                 system_address=g.system_address)
        uplinks["gb26875"] = Gb26875Uplink(g, cursor, mapping, record=record).start()
    if cfg.sl651 is not None:
        from gateway.sync.sl651.uplink import CARRIED as SL_CARRIED, Sl651Uplink

        s = cfg.sl651
        sensor = level_sensor(cfg)
        if sensor is None:
            log.warning("[sl651]: no water-level sensor configured: only keep-alives will be sent")
        cursor = DeliveryCursor(outbox, "sl651", SL_CARRIED, writer=writer, replay_per_s=s.replay_per_s)
        uplinks["sl651"] = Sl651Uplink(s, cursor, sensor, latest=lambda: latest(sensor), record=record).start()
    return uplinks


def brief(uplinks: dict) -> dict:
    """Each centre uplink's state for the `status` event (the full dict is in `gateway status`)."""
    return {name: {k: st.get(k) for k in ("state", "pending", "confirmed", "failed", "last_error")}
            for name, st in ((n, u.status()) for n, u in uplinks.items())}
