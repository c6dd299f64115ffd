"""Stage 3, run: the job queue and its runner, the built-in aggregates, and the sandbox for analyst code."""
