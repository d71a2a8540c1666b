"""Helpers of the `groups` plugin (plugins/groups.py): room configuration, SQL tables,
moderation rules and the per-App state. A sub-package whose name starts with `_`, so
plugins/__init__.py does not take it for a plugin."""
