"""Helpers of the referral plugin (plugins/referral.py): codes, tables, rules, poster."""
