"""`gateway sim`: a simulated device for every sensor of a config, at the configured address,
with values driven by a named scenario. Runs until Ctrl-C (or --for seconds)."""

from __future__ import annotations

import logging
import signal
import threading
import time

from drivers.sim.modbus_device import SimBus
from drivers.sim.serial_emitter import A02yyuwEmitter
from gateway.config.model import Config
from gateway.errors import GatewayError
from gateway.sim.scenarios import SCENARIOS, Scenario
from gateway.sim.serial_socket import SocketA02yyuw

log = logging.getLogger("gateway.sim")
TICK_S = 0.2


def _split_socket_url(url: str) -> tuple[str, int]:
    host, _, port = url[len("socket://"):].rpartition(":")
    return host, int(port)


class Simulation:
    """The simulated field of one config. start(), then tick(t) as scenario time passes."""

    def __init__(self, cfg: Config, scenario: Scenario):
        self.cfg = cfg
        self.scenario = scenario
        self.sensors = list(cfg.sensors.values())
        scenario.prepare(self.sensors)
        self.buses: dict[str, SimBus] = {}
        self.emitters: dict[str, A02yyuwEmitter] = {}
        self._behaviour: dict[str, str] = {}

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for bus in self.cfg.buses.values():
            on_bus = [s for s in self.sensors if s.bus == bus.name]
            if not on_bus:
                continue
            if bus.type == "gpio":  # a pin is not a port another process can serve: the daemon's sim GPIO is
                log.info("bus %s: dry contacts on GPIO pins are not served here (drive the sim GPIO's "
                         "inputs, or wire the contact to a Modbus DI module)", bus.name)
                continue
            if bus.type == "tcp":
                sim = SimBus.tcp(bus.host, int(bus.port))
            elif bus.type == "rtu":
                if str(bus.port).startswith("socket://"):
                    host, port = _split_socket_url(bus.port)
                    sim = SimBus.rtu(f"socket://{host}:{port}", baudrate=bus.baudrate)
                    sim.port = port
                else:
                    sim = SimBus.rtu(str(bus.port), baudrate=bus.baudrate)
            else:
                s = on_bus[0]
                dist = int(self._state(s, 0.0).values.get("distance", 2000))
                if str(bus.port).startswith("socket://"):
                    em = SocketA02yyuw(*_split_socket_url(bus.port), distance_mm=dist)
                else:
                    em = A02yyuwEmitter(str(bus.port), dist)
                self.emitters[s.name] = em.start()
                log.info("simulating %s (%s) on %s", s.name, s.profile.name, bus.port)
                continue
            for s in on_bus:
                sim.add_device(s.unit, s.profile, self._state(s, 0.0).values)
                where = f"{bus.host}:{bus.port}" if bus.type == "tcp" else bus.port
                log.info("simulating %s (%s, unit %d) on %s", s.name, s.profile.name, s.unit, where)
            self.buses[bus.name] = sim.start()

    def _state(self, sensor, t):
        return self.scenario.state(sensor, self.sensors.index(sensor), t)

    def tick(self, t: float) -> None:
        for s in self.sensors:
            st = self._state(s, t)
            if s.name in self.emitters:
                em = self.emitters[s.name]
                if "distance" in st.values:
                    em.set_distance(int(st.values["distance"]))
                self._set_behaviour(s.name, st.behaviour, lambda b: em.behave("silent" if b == "dead" else
                                                                              "noise" if b == "garbage" else b))
                continue
            sim = self.buses.get(s.bus)
            if sim is None:  # a gpio contact
                continue
            for point, value in st.values.items():
                sim.set_value(s.unit, point, value)
            self._set_behaviour(s.name, st.behaviour, lambda b, s=s, sim=sim: sim.behave(s.unit, b))

    def _set_behaviour(self, name: str, behaviour: str, apply) -> None:
        if self._behaviour.get(name) != behaviour:
            apply(behaviour)
            self._behaviour[name] = behaviour
            if behaviour != "normal":
                log.info("%s now behaves: %s", name, behaviour)

    def stop(self) -> None:
        for em in self.emitters.values():
            em.stop()
        for sim in self.buses.values():
            sim.stop()


def run_sim(cfg: Config, scenario_name: str, speed: float = 1.0, duration: float | None = None) -> int:
    scenario = SCENARIOS.get(scenario_name)
    if scenario is None:
        raise GatewayError(f"unknown scenario {scenario_name!r}; choose one of: {', '.join(SCENARIOS)}")
    sim = Simulation(cfg, scenario)
    sim.start()
    stop = threading.Event()
    # SIGINT too, explicitly: a sim started in the background of a script inherits SIGINT ignored
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"simulating {len(sim.sensors)} sensors, scenario '{scenario.name}': {scenario.description}", flush=True)
    start = time.monotonic()
    last_print = -10.0
    try:
        while not stop.is_set():
            t = (time.monotonic() - start) * speed
            if duration is not None and t >= duration * speed:
                break
            sim.tick(t)
            if t - last_print >= 5 * speed:
                last_print = t
                vals = []
                for s in sim.sensors:
                    st = scenario.state(s, sim.sensors.index(s), t)
                    main = next(iter(st.values.items()))
                    vals.append(f"{s.name}={main[1]:.4g}" + ("" if st.behaviour == "normal" else f"[{st.behaviour}]"))
                print(f"sim t={t:5.0f}s  " + "  ".join(vals), flush=True)
            stop.wait(TICK_S)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
    return 0
