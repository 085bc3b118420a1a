"""Compatibility names for plugins written for the 2017 Chaos Monkey Engine."""
