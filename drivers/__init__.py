"""The rover interface, transports, wire protocols and device drivers (later issues)."""
