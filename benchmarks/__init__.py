"""Side-by-side benchmarks of holdall against its peers and baselines."""
