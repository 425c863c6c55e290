"""Conformance suites every plugin must pass, and test transports."""
