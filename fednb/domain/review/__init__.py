"""Stage 2, review: the owner's policy, requests as submitted, and decisions bound to the code's hash."""
