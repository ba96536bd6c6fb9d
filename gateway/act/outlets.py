"""Which safety-side object drives an output of each kind: a relay (Siren, gateway/act/sirens.py), a
voice output (VoiceOutput, gateway/act/voice.py) or a Modbus output (ModbusOutput,
gateway/act/modbus_out.py). The last two only hand commands to a worker (`outlets[name]`)."""

from __future__ import annotations

from gateway.errors import ConfigError


def make_output(output, gpio, outlets: dict, adopt=None):
    """`adopt`: on a reload, the old Siren on this relay's pin (its state is taken over)."""
    if output.kind == "relay":
        from gateway.act.sirens import Siren

        return Siren(output, gpio, adopt)
    worker = outlets.get(output.name)
    if worker is None:
        raise ConfigError([f"[outputs.{output.name}] kind = \"{output.kind}\": no worker was started for it"])
    if output.kind == "voice":
        from gateway.act.voice import VoiceOutput

        return VoiceOutput(output, worker)
    from gateway.act.modbus_out import ModbusOutput

    return ModbusOutput(output, worker)


def _voice_key(cfg, name: str):
    """What a voice worker was started from: its output, its fixed texts and clips, its cache."""
    from gateway.act.voice import fixed_texts, message_text

    clips = {message_text(r.say[lv], lv): path for r in cfg.rules if name in r.sound
             for lv, path in r.say_clip.items()}
    return cfg.outputs[name], fixed_texts(cfg.rules, name), clips, cfg.gateway.data_dir


def start_voice_workers(cfg, on_problem, adopt=None) -> dict:
    """A started VoiceWorker per voice output of `cfg`. Nothing here waits on a backend: the clips
    are rendered by each worker on its own thread. `on_problem(output, text | None)`: a fault
    (or its recovery) to record. `adopt` = (old config, its workers), on a reload: a worker whose
    output, texts and clips did not change is kept (it goes on speaking, one voice, no restart)
    and taken out of the old workers; the caller stops what is left there."""
    import os

    from drivers.voice import VoiceError, open_voice
    from gateway.act.voice import VoiceWorker, fixed_texts, message_text

    workers = {}
    cache = os.path.join(cfg.gateway.data_dir, "voice")
    old_cfg, old_workers = adopt if adopt is not None else (None, {})
    for o in cfg.outputs.values():
        if o.kind != "voice":
            continue
        kept = old_workers.get(o.name)
        if (kept is not None and o.name in old_cfg.outputs and old_cfg.outputs[o.name].kind == "voice"
                and _voice_key(old_cfg, o.name) == _voice_key(cfg, o.name)):
            workers[o.name] = old_workers.pop(o.name)
            workers[o.name]._on_problem = on_problem  # its faults go to the daemon that has it now
            continue
        v = o.voice
        clips = {message_text(r.say[lv], lv): path for r in cfg.rules if o.name in r.sound
                 for lv, path in r.say_clip.items()}
        worker = None
        try:
            backend = open_voice(v.backend, device=v.device, voice=v.voice, speed=v.speed, port=v.port,
                                 baudrate=v.baudrate, record=v.record, cache_dir=cache, clips=clips,
                                 on_problem=lambda text, name=o.name: workers[name].backend_problem(text))
        except VoiceError as e:
            backend = _Unavailable(str(e))
        worker = VoiceWorker(o.name, backend, fixed_texts(cfg.rules, o.name),
                             on_problem=on_problem)
        workers[o.name] = worker.start()
    return workers


class _Unavailable:
    """A voice backend that could not be opened: every message is the same fault."""

    name = "unavailable"

    def __init__(self, reason: str):
        self.reason = reason

    def prepare(self, texts) -> list[str]:
        return [self.reason]

    def speak(self, text, prefix=None) -> None:
        from drivers.voice import VoiceError

        raise VoiceError(self.reason)

    def stop(self) -> None:
        pass

    def close(self) -> None:
        pass


def modbus_outlets(cfg, on_problem) -> tuple[dict, dict]:
    """(output name -> ModbusOutlet, bus name -> OutputWrites) for the Modbus outputs of `cfg`;
    the writes are served by the bus loops (gateway/acquire/bus_loop.py)."""
    from gateway.acquire.writes import ModbusOutlet, OutputWrites

    outlets, writes = {}, {}
    for o in cfg.outputs.values():
        if o.kind != "modbus":
            continue
        m = o.modbus
        w = writes.setdefault(m.bus, OutputWrites(m.bus, on_problem))
        w.add(o.name, unit=m.unit, coil=m.coil, register=m.register, on_value=m.on_value,
              off_value=m.off_value, multiple=m.multiple_write, timeout_s=m.timeout_s, retry_s=m.retry_s)
        outlets[o.name] = ModbusOutlet(o.name, w)
    return outlets, writes


def release_removed_modbus(old_cfg, cfg, writes: dict, on_problem) -> list[str]:
    """A reload: the Modbus outputs of `old_cfg` that `cfg` no longer has at the same place (bus,
    unit, coil or register) are written OFF by the new bus loops (the old ones are stopped, and a
    coil left ON would sound for ever). Returns the ones that cannot be: their bus is gone."""
    from gateway.acquire.writes import OutputWrites

    def where(o):
        m = o.modbus
        return m.bus, m.unit, m.coil, m.register

    kept = {where(o) for o in cfg.outputs.values() if o.kind == "modbus"}
    stranded = []
    for o in old_cfg.outputs.values():
        if o.kind != "modbus" or where(o) in kept:
            continue
        m = o.modbus
        bus = cfg.buses.get(m.bus)
        if bus is None or bus.type not in ("rtu", "tcp"):
            stranded.append(f"{o.name} (bus {m.bus} is gone: switch unit {m.unit} off by hand)")
            continue
        w = writes.setdefault(m.bus, OutputWrites(m.bus, on_problem))
        w.add(f"{o.name} (removed)", unit=m.unit, coil=m.coil, register=m.register, on_value=m.on_value,
              off_value=m.off_value, multiple=m.multiple_write, timeout_s=m.timeout_s, retry_s=m.retry_s)
    return stranded
