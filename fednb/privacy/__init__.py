"""Privacy building blocks shared by the domain and the analyst: differential-privacy mechanisms and
their accountant, DP-SGD, and the parts of secure aggregation (fixed point, Shamir, pairwise masks).

Each module imports its heavy dependency (cryptography, torch) itself; ``import fednb`` loads
none of them.
"""
