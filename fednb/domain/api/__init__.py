"""Stage 1, the door: the domain's HTTP API (routes only; every decision is made elsewhere)."""
