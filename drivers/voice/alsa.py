"""The `alsa` voice backend: Mandarin clips synthesised offline by espeak-ng (Debian package
`espeak-ng`, voice `cmn`) and played by aplay (`alsa-utils`) on an ALSA device: a USB sound card and
amplifier, or the Pi's jack.

Clips are rendered by `prepare` when the config is loaded (on the voice worker's thread, never on
the siren path) into `cache_dir`, named by a hash of (voice, speed, text) so a changed message is a
new file and an unchanged one is not rendered again. A recorded WAV given for a message (`clips`)
replaces the synthesis. A message with a live value (`{value}`) cannot be rendered beforehand: it is
rendered when first spoken, on the same worker thread, and cached like the others.

espeak-ng's Mandarin is understandable but robotic (tones, 多音字): a professional recording is
better for the fixed messages, which is what `say_clip` is for."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import wave
from collections.abc import Iterable

from drivers.voice.base import VoiceBackend, VoiceError

RENDER_TIMEOUT_S = 30.0


class AlsaVoice(VoiceBackend):
    name = "alsa"

    def __init__(self, device: str, cache_dir: str, *, voice: str = "cmn", speed: int = 150,
                 clips: dict[str, str] | None = None, on_problem=None, espeak: str = "espeak-ng",
                 aplay: str = "aplay"):
        self.device = device
        self.cache_dir = cache_dir
        self.voice = voice
        self.speed = speed
        self.clips = dict(clips or {})  # text -> a recorded WAV that replaces the synthesis
        self._on_problem = on_problem
        self._espeak = espeak
        self._aplay = aplay
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._voice_checked = False

    # -- clips -------------------------------------------------------------------------------
    def clip_path(self, text: str) -> str:
        """Where the synthesised clip of `text` is (or will be) cached."""
        key = hashlib.sha256(f"{self.voice}\0{self.speed}\0{text}".encode()).hexdigest()[:20]
        return os.path.join(self.cache_dir, f"{key}.wav")

    def clip_for(self, text: str) -> str:
        """The WAV to play for `text`: the user's recording, else the cached or a new rendering."""
        if text in self.clips:
            return self.clips[text]
        path = self.clip_path(text)
        if not os.path.exists(path):
            self.render(text, path)
        return path

    def render(self, text: str, path: str) -> None:
        espeak = shutil.which(self._espeak)
        if espeak is None:
            raise VoiceError(f"{self._espeak} is not installed: apt-get install espeak-ng (the alsa voice "
                             "backend renders its clips with it)")
        if not self._voice_checked:
            self._check_voice(espeak)
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
        except OSError as e:
            raise VoiceError(f"voice cache {self.cache_dir} cannot be created: {e.strerror}") from e
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            run = subprocess.run([espeak, "-v", self.voice, "-s", str(self.speed), "-w", tmp, "--", text],
                                 capture_output=True, timeout=RENDER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise VoiceError(f"espeak-ng took over {RENDER_TIMEOUT_S:g} s to render \"{text}\"") from None
        problem = None
        if run.returncode != 0:
            problem = f"exit {run.returncode}: {run.stderr.decode(errors='replace').strip()[:200]}"
        else:
            problem = clip_problem(tmp)
        if problem:
            _remove(tmp)
            raise VoiceError(f"espeak-ng -v {self.voice} cannot synthesise \"{text}\" ({problem})")
        os.replace(tmp, path)  # a half-written clip is never found under its name

    def _check_voice(self, espeak: str) -> None:
        """espeak-ng speaks an unknown voice with its default (English) voice and exits 0: ask first."""
        try:
            run = subprocess.run([espeak, "--voices"], capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise VoiceError(f"espeak-ng --voices failed: {e}") from e
        names = set()
        for line in run.stdout.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                names.update((cols[1], cols[3], cols[4], cols[4].rsplit("/", 1)[-1]))
        if self.voice not in names:
            raise VoiceError(f"espeak-ng has no voice {self.voice!r} (Mandarin is cmn; espeak-ng --voices lists them)")
        self._voice_checked = True

    def prepare(self, texts: Iterable[str]) -> list[str]:
        problems = []
        for text in dict.fromkeys(texts):
            try:
                self.clip_for(text)
            except VoiceError as e:
                problems.append(str(e))
        return problems

    # -- playing -----------------------------------------------------------------------------
    def speak(self, text: str, prefix: str | None = None) -> None:
        files = ([self.clip_for(prefix)] if prefix else []) + [self.clip_for(text)]
        aplay = shutil.which(self._aplay)
        if aplay is None:
            raise VoiceError(f"{self._aplay} is not installed: apt-get install alsa-utils")
        self.stop()
        try:
            proc = subprocess.Popen([aplay, "-q", "-D", self.device, *files], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            raise VoiceError(f"aplay cannot start: {e.strerror}") from e
        with self._lock:
            self._proc = proc
        threading.Thread(target=self._watch, args=(proc, text), name="aplay-watch", daemon=True).start()

    def _watch(self, proc: subprocess.Popen, text: str) -> None:
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        rc = proc.wait()
        with self._lock:
            stopped = getattr(proc, "stopped_by_us", False)
            if self._proc is proc:
                self._proc = None
        if stopped or not self._on_problem:
            return
        if rc != 0:
            last = err.splitlines()[-1] if err else f"exit {rc}"
            self._on_problem(f"aplay -D {self.device} could not play \"{text}\": {last}")
        else:
            self._on_problem(None)  # played to the end: a failure before is over

    @property
    def playing(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.stopped_by_us = True
        proc.terminate()
        try:
            proc.wait(1.0)
        except subprocess.TimeoutExpired:
            proc.kill()


def clip_problem(path: str) -> str | None:
    """Why `path` is not a playable clip, or None."""
    try:
        with wave.open(path, "rb") as w:
            if w.getnframes() == 0:
                return "no audio"
    except (OSError, EOFError, wave.Error) as e:
        return f"not a WAV file: {e}"
    return None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
