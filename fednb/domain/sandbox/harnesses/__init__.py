"""Harness implementations, one per module; see :mod:`fednb.domain.sandbox.harness`."""
