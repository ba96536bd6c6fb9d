"""The daemon process: `daemon` wires the parts, `process` owns signals, reload and logging,
`notify` talks to systemd."""
