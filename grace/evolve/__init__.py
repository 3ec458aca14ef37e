"""The evolution engine: archive, selection, loop."""
