"""GB/T 26875.3-2011: the urban fire remote-monitoring protocol between a user information
transmission device (this gateway) and the monitoring centre. docs/gb26875.md has the mapping."""
