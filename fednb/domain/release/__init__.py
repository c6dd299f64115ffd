"""Stage 4, release: nothing leaves the domain except through here.

Disclosure control, differential privacy and its budget ledger, and secure aggregation.
"""
