"""Wrappers: functions that take an attribution method and return a new one (noise tunnel, ...)."""
