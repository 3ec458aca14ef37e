"""The evolutionary search: archive, selection, negatives, active rounds and the async loop."""
