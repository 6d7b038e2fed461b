"""Model runners: each loads its model once per worker process and runs one input."""
