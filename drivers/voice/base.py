"""The one interface every voice backend implements. The voice worker (gateway/act/voice.py) is
its only caller, on a thread of its own: a backend may be slow or hang without delaying a relay."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

from gateway.errors import OutputError


class VoiceError(OutputError):
    """A message could not be prepared or spoken (no espeak-ng, no ALSA device, no module)."""


class VoiceBackend(ABC):
    """Something that speaks Mandarin text aloud. `speak` starts and returns: the message plays on
    while the caller goes on; `stop` cuts it. A failure found later (aplay exits with an error, the
    module does not acknowledge) goes to the `on_problem(text)` callback given to the backend."""

    name = "?"

    def prepare(self, texts: Iterable[str]) -> list[str]:
        """Get ready to speak `texts` fast (render clips); returns a sentence per text that cannot be."""
        return []

    @abstractmethod
    def speak(self, text: str, prefix: str | None = None) -> None:
        """Start speaking `prefix` (the drill announcement) then `text`, cutting what is playing.
        Raises VoiceError if it cannot start."""

    @abstractmethod
    def stop(self) -> None:
        """Cut what is being said (nothing if silent)."""

    def close(self) -> None:
        self.stop()
