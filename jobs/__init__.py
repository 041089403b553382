"""Ray job entrypoints: batch (python -m jobs.batch), cost report (python -m jobs.costs), demo."""
