"""Model builders: the example repository and the models tests and benchmarks generate offline."""
