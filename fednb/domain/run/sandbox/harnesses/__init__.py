"""Harness implementations, one per module; see :mod:`fednb.domain.run.sandbox.harness`."""
