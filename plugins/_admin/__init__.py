"""Helpers of the operator plugin (plugins/admin.py): its word list, the review queue of
bulk deliveries nobody can vouch for, customer look-up, the status snapshot and the daily numbers.
Not a plugin itself: the plugin loader skips packages whose name starts with `_`."""
