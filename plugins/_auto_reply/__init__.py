"""Helpers of the auto_reply plugin (plugins/auto_reply.py): data files, matching, business
hours, the LLM client and per-App runtime memory. Not a plugin (the name starts with "_")."""
