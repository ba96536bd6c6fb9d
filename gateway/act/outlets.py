"""Which safety-side object drives an output of each kind: a relay (Siren, gateway/act/sirens.py), a
voice output (VoiceOutput, gateway/act/voice.py) or a Modbus output (ModbusOutput,
gateway/act/modbus_out.py). The last two only hand commands to a worker (`outlets[name]`)."""

from __future__ import annotations

from gateway.errors import ConfigError


def make_output(output, gpio, outlets: dict):
    if output.kind == "relay":
        from gateway.act.sirens import Siren

        return Siren(output, gpio)
    worker = outlets.get(output.name)
    if worker is None:
        raise ConfigError([f"[outputs.{output.name}] kind = \"{output.kind}\": no worker was started for it"])
    if output.kind == "voice":
        from gateway.act.voice import VoiceOutput

        return VoiceOutput(output, worker)
    from gateway.act.modbus_out import ModbusOutput

    return ModbusOutput(output, worker)
