"""TinyDB-backed workspace store: jobs, runs, baselines, best picks, promotions."""
