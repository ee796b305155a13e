"""Harness: wires the loop, runs scenarios on sim or hardware, the ``rover`` CLI."""
