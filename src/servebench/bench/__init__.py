"""Benchmarks: measurements that write numbers to files under results/benchmarks/ and docs,
never timed assertions. Each is `servebench bench NAME [OPTIONS]` and holds the machine for
minutes: run nothing beside it."""
