"""The one table of which keys each section accepts. The validator rejects anything
else, and tests/test_config_reference.py checks config/README.md against it, so the
documentation cannot drift from what `gateway check` accepts. Section names use NAME
for a table the technician names (`[buses.rs485]`)."""

from __future__ import annotations

from gateway.config.model import BUS_TYPES, LEVELS, PATTERNS  # noqa: F401  (re-exported)

KEYS: dict[str, tuple[str, ...]] = {
    # the top level of the config file
    "": ("gateway", "buses", "sensors", "rules", "gpio", "outputs", "inputs",
         "uplink", "outbox", "commands", "areas", "gb26875", "sl651", "updates"),
    "gateway": ("id", "data_dir", "profiles", "control_socket"),
    "buses.NAME": ("type", "port", "host", "baudrate", "parity", "bytesize", "stopbits",
                   "timeout_s", "retries", "backoff_max_s"),
    "sensors": ("name", "bus", "unit", "profile", "poll_s", "timeout_s", "retries",
                "stale_after_s", "stale_after", "place", "pin", "active_low", "pull_up", "debounce_ms"),
    "rules": ("sensor", "point", "above", "below", "equals", "hysteresis", "debounce_s",
              "rise", "drop", "latch", "sound", "say", "say_clip", "say_clear"),
    "rules.rise": ("amount", "within_s", "level"),
    "rules.drop": ("amount", "within_s", "level"),
    "gpio": ("backend", "record"),
    "outputs.NAME": ("pin", "active_low", "pattern", "max_on_s", "kind", "area",
                     # kind = "voice"
                     "backend", "device", "voice", "speed", "port", "baudrate", "record",
                     # kind = "modbus"
                     "bus", "unit", "coil", "register", "on_value", "off_value", "multiple_write",
                     "timeout_s", "retry_s"),
    "outputs.NAME.pattern.LEVEL": ("on_s", "off_s"),
    "inputs.NAME": ("pin", "action", "active_low", "debounce_ms"),
    "uplink": ("host", "port", "topic_root", "client_id", "protocol", "keepalive_s",
               "username", "password", "tls", "replay_per_s", "inflight_max"),
    "uplink.tls": ("ca", "cert", "key"),
    "outbox": ("max_rows", "max_mb", "telemetry_period_s", "deadband", "status_period_s", "commit_s"),
    "commands": ("platform_keys",),
    "updates": ("release_keys", "health_s", "probation_s", "keep", "install_root", "download_max_mb"),
    "areas.NAME": ("burst_s", "messages", "message_s"),
    "gb26875": ("host", "port", "source", "destination", "confirm_timeout_s", "resends", "heartbeat_s",
                "replay_per_s", "zone", "system_address"),
    "sl651": ("host", "port", "station", "centre", "password", "confirm_timeout_s", "resends", "keepalive_s",
              "timed_report_s", "hourly", "station_type", "sensor", "replay_per_s"),
    # a profile file (gateway/profiles/*.toml)
    "profile": ("name", "kind", "description", "frame", "pattern", "points"),
    "profile.points": ("name", "unit", "register", "function", "type", "word_order", "scale",
                       "offset", "decimals_register", "unit_register", "unit_codes", "range",
                       "bits", "states", "field"),
}

# The range of every bounded number, (lowest, highest) both allowed, per section and key; the
# builders take them from here (Table.number(..., within=...)) and tests/test_config_reference.py
# checks that config/README.md writes each one as `lo..hi`. Every number is also finite and at
# most 1e15 in size (tables.unfit); rule thresholds are checked against the point's plausible
# range and hysteresis against the gaps between levels (coherence.py).
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "buses.NAME": {"backoff_max_s": (1, 3600)},
    "sensors": {"unit": (1, 247), "poll_s": (0.05, 3600), "stale_after_s": (0.1, 86400),
                "debounce_ms": (0, 10000)},
    "rules": {"debounce_s": (0, 3600)},
    "rules.rise": {"within_s": (1, 86400)},
    "rules.drop": {"within_s": (1, 86400)},
    "outputs.NAME": {"max_on_s": (1, 86400), "speed": (80, 450), "unit": (1, 247), "coil": (0, 0xFFFF),
                     "register": (0, 0xFFFF), "on_value": (0, 0xFFFF), "off_value": (0, 0xFFFF),
                     "retry_s": (0.1, 60)},
    "areas.NAME": {"burst_s": (8.0, 20.0), "messages": (1, 2), "message_s": (10.0, 30.0)},
    "outputs.NAME.pattern.LEVEL": {"on_s": (0.05, 60), "off_s": (0.05, 60)},
    "uplink": {"replay_per_s": (1, 100000)},
    "updates": {"health_s": (5, 3600), "probation_s": (0, 3600), "keep": (2, 5), "download_max_mb": (1, 2000)},
    "outbox": {"max_mb": (0.1, 1_000_000), "telemetry_period_s": (0.1, 86400), "deadband": (0, 10),
               "status_period_s": (0.5, 86400), "commit_s": (0.1, 300)},
}

# Allowed values, shared by the validator and the summary.
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400)
PARITIES = ("N", "E", "O")
BYTESIZES = (5, 6, 7, 8)
STOPBITS = (1, 2)
MODBUS_BUSES = ("rtu", "tcp")
PROFILE_KINDS = ("modbus", "serial")
FRAMES = ("a02yyuw", "line")
A02YYUW_FIELDS = ("distance",)
POINT_TYPES = ("u16", "i16", "u32", "i32", "f32", "bits", "bit")  # bit: a coil or discrete input
WORD_ORDERS = ("ABCD", "CDAB")
FUNCTIONS = (1, 2, 3, 4)  # 1 coils, 2 discrete inputs (type "bit"), 3 holding, 4 input registers
MAX_READ_REGISTERS = 125  # Modbus: one read-holding/input-registers request
GPIO_BACKENDS = ("sim", "rpi")
BCM_PINS = range(0, 28)  # the 40-pin header's GPIO0..GPIO27
INPUT_ACTIONS = ("silence", "ack")
MQTT_PROTOCOLS = ("5", "3.1.1")
OUTPUT_KINDS = ("relay", "modbus", "voice")
VOICE_BACKENDS = ("alsa", "syn6288", "sim")
