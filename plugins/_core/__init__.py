"""Helpers of the core plugin (opt-out by meaning)."""
