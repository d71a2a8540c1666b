"""Helpers of the broadcasts plugin (群发): campaign files, audiences, the campaign state
machine, progress/ETA and the delivery report. plugins/broadcasts.py wires them to commands
and the minute check job; scripts/broadcast.py reaches them through those commands."""
