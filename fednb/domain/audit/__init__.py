"""Stage 5, audit: the hash-chained log of every step, and the transparency report built from it."""
