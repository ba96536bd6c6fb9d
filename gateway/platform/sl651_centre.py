"""A reference SL 651-2014 centre (`gateway-platform sl651-centre`): accepts stations over TCP,
confirms each report (M2: same function and serial, end ESC = stay online), decodes it to a JSON
line, and can be told to misbehave: deny=N (answer N reports with a wrong serial: not a
confirmation), stall=N (answer nothing to N reports; -1: never), drop=N (close the line on N reports),
cut=N (send half of the confirm to N reports, then close: a line lost mid-frame).
A keep-alive (2F) has no answer, as the standard says."""

from __future__ import annotations

from gateway.sync.sl651 import codec

from .tcp_centre import TcpCentre


class Sl651Centre(TcpCentre):
    name = "sl651-centre"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, deny: int = 0, stall: int = 0, drop: int = 0,
                 cut: int = 0, end: int = codec.ESC, echo=None):
        super().__init__(host, port, deny=deny, stall=stall, drop=drop, cut=cut, echo=echo)
        self.end = end

    def confirmed(self, function: str | None = None) -> list[dict]:
        with self._lock:
            return [ln["report"] | {"function": ln["frame"]["function"]} for ln in self.lines
                    if ln.get("answer") == "confirm" and "report" in ln
                    and (function is None or ln["frame"]["function"] == function)]

    def of(self, function: str) -> list[dict]:
        with self._lock:
            return [ln for ln in self.lines if ln.get("frame", {}).get("function") == function]

    def reader(self):
        return codec.FrameReader()

    def _handle(self, conn, peer: str, item) -> bool:
        if isinstance(item, codec.FrameError):
            self._log({"peer": peer, "error": str(item)})  # invalid: not answered (M2)
            return True
        line = {"peer": peer, "frame": item.as_dict()}
        if item.function == codec.KEEPALIVE or not item.up:
            self._log(line | {"answer": "none"})
            return True
        try:
            line["report"] = codec.parse_report(item.body)
        except codec.FrameError as e:
            line["report_error"] = str(e)
            self._log(line | {"answer": "none"})
            return True
        if self.ignore is not None and self.ignore(line["report"] | {"function": line["frame"]["function"]}):
            self._log(line | {"answer": "ignored"})
            return True
        if self._take("drop"):
            self._log(line | {"answer": "dropped"})
            return False
        if self._take("stall"):
            self._log(line | {"answer": "none"})
            return True
        serial = item.serial or 0
        answer = "confirm"
        if self._take("deny"):
            serial, answer = (serial + 1) & 0xFFFF, "wrong-serial"
        # §6.6.4.5-7 down body: the report's serial and the centre's send time
        body = serial.to_bytes(2, "big") + codec.bcd_time()
        down = codec.Frame(item.centre, item.station, item.password, item.function, body, up=False, end=self.end)
        cut = self._take("cut")
        self._log(line | {"answer": "cut" if cut else answer})
        raw = down.encode()
        try:
            conn.sendall(raw[:len(raw) // 2] if cut else raw)
        except OSError:
            return False
        return not cut
