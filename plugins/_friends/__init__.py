"""Helpers of the friends plugin (plugins/friends.py): data files, tables, friend requests,
follow-up sequences, paced adding, CSV and data rights. Skipped by the plugin loader
because the folder name starts with an underscore."""
