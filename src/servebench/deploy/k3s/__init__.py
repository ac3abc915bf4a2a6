"""The K3s deployment target: manifests (k3s/ base and overlays), external commands and images,
the driver (deploy, port-forward, monitor, collect, tear down) and the cluster faults' commands.
Checked offline only here: no cluster can run on this machine (docs/k3s.md)."""
