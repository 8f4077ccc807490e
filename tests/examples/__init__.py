"""Scenario tests of the reference applications, on the virtual clock, on every store."""
