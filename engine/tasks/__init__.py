"""Job kinds: each module `engine/tasks/<kind>.py` exposes `run(spec, ctx) -> dict` (the result payload)."""
