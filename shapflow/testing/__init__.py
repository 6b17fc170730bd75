"""Testing aids: SMOKE stand-ins of every external asset (``smoke``), kernel benchmark workloads (``workloads``)."""
