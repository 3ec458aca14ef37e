"""Proposers: the search operators (LLM or built-in) that write reward programs."""
