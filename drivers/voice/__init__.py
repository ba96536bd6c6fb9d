"""Voice backends, chosen by name in the config (`[outputs.NAME] kind = "voice"`, `backend`):
`alsa` (espeak-ng clips rendered beforehand, played with aplay), `syn6288` (a serial TTS module of the
SYN6288 family) and `sim` (records what would be said). There is no fallback: an alsa output on
a machine without espeak-ng is a fault that says so, never a silent simulation."""

from __future__ import annotations

from drivers.voice.base import VoiceBackend, VoiceError

BACKENDS = ("alsa", "syn6288", "sim")

__all__ = ["BACKENDS", "VoiceBackend", "VoiceError", "open_voice"]


def open_voice(backend: str, *, device: str = "default", voice: str = "cmn", speed: int = 150,
               port: str | None = None, baudrate: int = 9600, record: str | None = None,
               cache_dir: str = ".", clips: dict[str, str] | None = None, on_problem=None) -> VoiceBackend:
    """The backend `backend`, from plain values (not yet prepared: call prepare())."""
    if backend == "alsa":
        from drivers.voice.alsa import AlsaVoice

        return AlsaVoice(device, cache_dir, voice=voice, speed=speed, clips=clips, on_problem=on_problem)
    if backend == "syn6288":
        from drivers.voice.syn6288 import Syn6288Voice

        return Syn6288Voice(port or "", baudrate=baudrate, on_problem=on_problem)
    if backend == "sim":
        from drivers.voice.sim import SimVoice

        return SimVoice(record=record)
    raise VoiceError(f"unknown voice backend {backend!r}; expected one of {', '.join(BACKENDS)}")
