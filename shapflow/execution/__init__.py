"""Where coalition evaluations and retrainings run: this process, worker processes, Ray tasks."""
