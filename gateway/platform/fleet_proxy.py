"""A counting TCP proxy in front of a broker: what the broker's port saw, connection by connection.

    proxy = CountingProxy(listen_port, "127.0.0.1", broker_port).start()   # a child process
    proxy.pause()      # the port refuses (as the broker's would while it is down); open links are cut
    proxy.resume()     # listening again on the same port; returns the wall time it did
    proxy.accepts()    # [(wall time, "mqtt" | "probe")]: every accepted TCP connection, and whether
                       # its first byte was an MQTT CONNECT (0x10) or it closed without one (a probe)
    proxy.close()

It runs in its own interpreter (asyncio, one thread) so that copying the fleet's traffic does not
compete for the fleet's GIL, and talks to its parent over stdin/stdout, one JSON line per command.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

_MQTT_CONNECT = 0x10


class CountingProxy:
    """The parent's handle on the proxy process."""

    def __init__(self, listen_port: int, upstream_host: str, upstream_port: int, host: str = "127.0.0.1"):
        self.host, self.port = host, listen_port
        self._args = [host, str(listen_port), upstream_host, str(upstream_port)]
        self.proc: subprocess.Popen | None = None

    def start(self) -> "CountingProxy":
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.platform.fleet_proxy", *self._args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._ask("ping")
        return self

    def _ask(self, command: str):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fleet proxy exited ({self.proc.poll()})")
        return json.loads(line)

    def pause(self) -> float:
        return self._ask("pause")

    def resume(self) -> float:
        return self._ask("resume")

    def accepts(self) -> list[tuple[float, str]]:
        return [tuple(a) for a in self._ask("accepts")]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._ask("quit")
            except (OSError, RuntimeError, ValueError):
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "CountingProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


# -- the proxy process -------------------------------------------------------------------------
class _Proxy:
    def __init__(self, host: str, port: int, up_host: str, up_port: int):
        self.host, self.port, self.up_host, self.up_port = host, port, up_host, up_port
        self.server: asyncio.base_events.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.accepted: list[list] = []

    async def listen(self) -> float:
        if self.server is None:
            self.server = await asyncio.start_server(self._link, self.host, self.port, backlog=4096,
                                                     reuse_address=True)
        return time.time()

    async def pause(self) -> float:
        if self.server is not None:
            self.server.close()
            self.server = None
        for w in list(self.links):
            w.transport.abort()
        self.links.clear()
        return time.time()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        entry = [time.time(), "probe"]
        self.accepted.append(entry)
        self.links.add(writer)
        try:
            first = await reader.read(65536)
            if not first:
                return
            if first[0] & 0xF0 == _MQTT_CONNECT:
                entry[1] = "mqtt"
            try:
                up_r, up_w = await asyncio.open_connection(self.up_host, self.up_port)
            except OSError:
                return
            self.links.add(up_w)
            up_w.write(first)
            await asyncio.gather(self._pipe(reader, up_w), self._pipe(up_r, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer,):
                self.links.discard(w)
                w.transport.abort()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await src.read(65536)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            self.links.discard(dst)
            dst.transport.abort()


async def _serve(argv: list[str]) -> None:
    host, port, up_host, up_port = argv[0], int(argv[1]), argv[2], int(argv[3])
    proxy = _Proxy(host, port, up_host, up_port)
    await proxy.listen()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(value) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            answer("bye")
            await proxy.pause()
            return
        if line == "ping":
            answer("pong")
        elif line == "pause":
            answer(await proxy.pause())
        elif line == "resume":
            answer(await proxy.listen())
        elif line == "accepts":
            answer(proxy.accepted)
        else:
            answer({"error": f"unknown command {line!r}"})


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1:]))
