"""Plugins that live outside plugins/: load one with BOT_PLUGINS=examples.points.plugin:plugin."""
