"""The validated configuration, as plain dataclasses. This is the contract between
`gateway.config` (which builds it from TOML and checks it) and the rest of the gateway.
Field defaults here are the documented defaults (config/README.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

LEVELS = ("blue", "yellow", "orange", "red")  # national four-colour scale, IV..I
BUS_TYPES = ("rtu", "tcp", "serial", "gpio")  # gpio: dry contacts on BCM pins (gateway/acquire/contacts.py)
DEFAULT_DATA_DIR = "/var/lib/community-gateway"
DEFAULT_CONFIG_PATH = "/etc/community-gateway/gateway.toml"


@dataclass(frozen=True)
class GatewaySection:
    id: str
    data_dir: str = DEFAULT_DATA_DIR
    profiles: tuple[str, ...] = ()  # extra profile files or directories, searched before the shipped ones
    control_socket: str | None = None  # None: /run/community-gateway/control.sock as root, else <data_dir>/control.sock


@dataclass(frozen=True)
class Bus:
    name: str
    type: str  # rtu | tcp | serial
    port: str | int | None  # rtu/serial: device path or pyserial URL; tcp: TCP port number; gpio: None
    host: str | None = None  # tcp only
    baudrate: int = 9600
    parity: str = "N"  # N | E | O  (cheap sensors ship 8N1)
    bytesize: int = 8
    stopbits: int = 1
    timeout_s: float = 0.3  # per transaction, default for the bus's devices
    retries: int = 1
    backoff_max_s: float = 30.0  # a silent device is retried at most this far apart


@dataclass(frozen=True)
class Point:
    """One value of a profile: a register span (Modbus) or a frame field (serial)."""
    name: str
    unit: str = ""
    register: int | None = None  # Modbus start address (0-based, as on the wire)
    function: int = 3  # 1 coil, 2 discrete input (type "bit"), 3 holding, 4 input
    type: str = "u16"  # u16 i16 u32 i32 f32 bits bit
    word_order: str = "ABCD"  # ABCD (big-endian words) or CDAB (low word first)
    scale: float = 1.0  # value = raw * scale / 10**decimals + offset
    offset: float = 0.0
    decimals_register: int | None = None  # register holding the decimal places (QDY30A 0x0003)
    unit_register: int | None = None  # register holding the unit code
    unit_codes: dict[int, str] = field(default_factory=dict)  # code -> unit, converted to `unit`
    range: tuple[float, float] | None = None  # plausible range; outside = fault, never a value
    bits: dict[str, int] = field(default_factory=dict)  # type "bits": name -> bit number
    states: dict[int, str] = field(default_factory=dict)  # status codes -> meaning, for display
    field: str | None = None  # serial: which frame field (A02YYUW: "distance"; line: regex group)

    @property
    def words(self) -> int:
        return 2 if self.type in ("u32", "i32", "f32") else 1


@dataclass(frozen=True)
class Profile:
    """A sensor family, as data (gateway/profiles/*.toml)."""
    name: str
    kind: str  # modbus | serial
    description: str = ""
    points: tuple[Point, ...] = ()
    frame: str | None = None  # serial: "a02yyuw" (0xFF H L SUM) or "line"
    pattern: str | None = None  # serial "line": regex with named groups
    source: str = ""  # file it came from


@dataclass(frozen=True)
class Sensor:
    name: str
    bus: str
    profile: Profile
    unit: int | None = None  # Modbus unit id 1..247; None on a serial bus
    poll_s: float = 1.0
    timeout_s: float | None = None  # None: the bus's timeout_s
    retries: int | None = None  # None: the bus's retries
    stale_after_s: float | None = None  # None: `stale_after` polls (gateway.acquire.quality.stale_limits)
    stale_after: int = 3  # polls without a reading before a point is stale
    place: str | None = None  # spoken as {place} in voice messages; None: the sensor's name
    pin: int | None = None  # gpio bus: the BCM pin of the dry contact
    active_low: bool = True  # gpio bus: the contact closes to ground (internal pull-up)
    pull_up: bool = True  # gpio bus: the pin's internal resistor (False: pull-down)
    debounce_ms: int = 50  # gpio bus: a level must hold this long to count


@dataclass(frozen=True)
class RateSpec:
    """A rise or drop of `amount` within `within_s` raises `level`."""
    amount: float
    within_s: float
    level: str


@dataclass(frozen=True)
class Rule:
    sensor: str
    point: str
    above: dict[str, float] = field(default_factory=dict)  # level -> threshold
    below: dict[str, float] = field(default_factory=dict)
    equals: dict[str, tuple[int, ...]] = field(default_factory=dict)  # level -> state codes
    hysteresis: float = 0.0
    debounce_s: float = 0.0
    rise: RateSpec | None = None
    drop: RateSpec | None = None
    latch: bool = False  # stays active until acknowledged (smoke)
    sound: tuple[str, ...] = ()  # output names
    say: dict[str, str] = field(default_factory=dict)  # level -> message (placeholders resolved but {value})
    say_clip: dict[str, str] = field(default_factory=dict)  # level -> a recorded WAV replacing the synthesis
    say_clear: str | None = None  # spoken once when the alarm clears

    @property
    def name(self) -> str:
        return f"{self.sensor}.{self.point}"


@dataclass(frozen=True)
class Pattern:
    """steady: on_s = 0. pulse: on_s on, off_s off."""
    name: str
    on_s: float = 0.0
    off_s: float = 0.0


PATTERNS = {
    "steady": Pattern("steady"),
    "pulse": Pattern("pulse", 1.0, 1.0),
    "slow-pulse": Pattern("slow-pulse", 1.0, 4.0),
    "fast-pulse": Pattern("fast-pulse", 0.25, 0.25),
}


@dataclass(frozen=True)
class Output:
    name: str
    pin: int | None  # BCM; None for a voice or Modbus output
    active_low: bool = True  # most Pi relay boards
    pattern: dict[str, Pattern] = field(default_factory=dict)  # level -> pattern; levels absent stay off
    max_on_s: float = 600.0  # auto-silence after this long
    kind: str = "relay"  # relay | modbus | voice
    area: str | None = None  # outputs of one area start and stop together; siren and voice alternate
    voice: "VoiceSpec | None" = None  # kind = "voice"
    modbus: "ModbusWrite | None" = None  # kind = "modbus"


@dataclass(frozen=True)
class Input:
    name: str
    pin: int
    action: str = "silence"  # silence | ack
    active_low: bool = True  # button to ground, internal pull-up
    debounce_ms: int = 50


@dataclass(frozen=True)
class Gpio:
    backend: str = "sim"  # sim | rpi
    record: str | None = None  # sim only: JSON lines file of pin changes


@dataclass(frozen=True)
class Tls:
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Uplink:
    host: str
    port: int = 1883
    topic_root: str = "city/v1"
    client_id: str | None = None  # None: the gateway id
    protocol: str = "5"  # "5" or "3.1.1"
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    tls: Tls | None = None
    replay_per_s: float = 200.0
    inflight_max: int = 20  # mosquitto's max_inflight_messages default


@dataclass(frozen=True)
class Outbox:
    max_rows: int = 1_000_000
    max_mb: float = 512.0
    telemetry_period_s: float = 60.0
    deadband: float = 0.05  # relative change (5 %) reported before the period ends
    status_period_s: float = 60.0
    commit_s: float = 30.0  # telemetry, status and delivery marks are committed together this often


@dataclass(frozen=True)
class Commands:
    platform_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Config:
    path: str
    gateway: GatewaySection
    buses: dict[str, Bus]
    sensors: dict[str, Sensor]  # insertion order = file order
    gpio: Gpio = field(default_factory=Gpio)
    outputs: dict[str, Output] = field(default_factory=dict)
    inputs: dict[str, Input] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    uplink: Uplink | None = None
    outbox: Outbox = field(default_factory=Outbox)
    commands: Commands | None = None
    areas: dict[str, "Area"] = field(default_factory=dict)
    text_hash: str = ""  # sha256 of the file, reported in the birth message
    gb26875: object = None  # gateway.config.centres.Gb26875: the fire remote-monitoring centre
    sl651: object = None  # gateway.config.centres.Sl651: the flood office
    updates: object = None  # gateway.config.updates.Updates: None accepts no release bundle


# -- voice and Modbus outputs, areas (issue 13) -----------------------------------------
VOICE_PATTERNS = {
    "repeat": Pattern("repeat"),  # the message in every voice slot while the alarm sounds
    "once": Pattern("once"),  # the message in the first voice slot only
}


@dataclass(frozen=True)
class VoiceSpec:
    backend: str  # alsa | syn6288 | sim
    device: str = "default"  # alsa: the ALSA PCM (aplay -D)
    voice: str = "cmn"  # alsa: the espeak-ng voice (Mandarin)
    speed: int = 150  # alsa: espeak-ng words per minute
    port: str | None = None  # syn6288: serial port or pyserial URL
    baudrate: int = 9600  # syn6288
    record: str | None = None  # sim: JSON lines file of what was said


@dataclass(frozen=True)
class ModbusWrite:
    bus: str
    unit: int
    coil: int | None = None  # FC05, read back with FC01
    register: int | None = None  # FC06 (FC16 with multiple_write), read back with FC03
    on_value: int = 1  # register: the value written for ON
    off_value: int = 0
    multiple_write: bool = False  # register: FC16 instead of FC06 (modules that only take FC16)
    timeout_s: float = 0.3
    retry_s: float = 1.0  # a write the device did not confirm is tried again this often


@dataclass(frozen=True)
class Area:
    """GB 50116-2013 §4.8: one siren burst of burst_s, then `messages` voice slots of message_s."""
    name: str
    burst_s: float = 10.0  # 8..20
    messages: int = 1  # 1..2
    message_s: float = 10.0  # 10..30
