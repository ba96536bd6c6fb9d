"""SL 651-2014 (水文监测数据通信规约), HEX/BCD encoding: this gateway as a telemetry station
reporting water level to the flood office. docs/sl651.md has the mapping and the sources."""
