"""Deployment drivers: `local` (bentoml serve on this machine) and, later, `k3s`."""
