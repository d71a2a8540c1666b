"""Helpers of the content calendar plugin (plugins/calendar.py): key dates, the calendar
data model and its validation, and the publishing runtime. Not a plugin itself: the plugin
loader skips packages whose name starts with `_`."""
