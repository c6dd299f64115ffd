"""fednb: federated data science from Jupyter; the data never leaves its owners' servers."""

from fednb._version import __version__

__all__ = ["__version__"]
