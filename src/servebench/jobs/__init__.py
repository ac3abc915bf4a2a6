"""The jobs of the study, one per workflow job: calibrate a variant, run a scenario, run a
fault. Each takes the checked configuration and its files, builds the typed settings the
layers below take (servebench.settings), deploys the variant, drives it with the load
generator, tears it down and writes its folder of the results tree, `meta.json` last.

A job that fails (server does not start, generator error) is not an exception for the
workflow: it is recorded as an invalid run with its reason, so the other runs go on and the
analysis lists it. Interrupts (Ctrl-C, SIGTERM from Snakemake) propagate; the deployment is
torn down on the way out.
"""
