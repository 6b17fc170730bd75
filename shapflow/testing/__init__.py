"""Testing aids: fast settings of the digits use cases (``fast``), kernel benchmark workloads (``workloads``)."""
