"""grace: interpretable reward functions as Python code, recovered from expert demonstrations."""

__version__ = "0.1.0"
