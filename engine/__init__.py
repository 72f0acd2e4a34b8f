"""Everything that is not UI or storage: data, metrics, jobs, scheduling, workers, models."""
