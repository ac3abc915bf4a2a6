"""The analysis of the study: pure statistics (`statistics`), reading the results tree
(`results`), the tables (`tables`), the figures (`figures`) and the resilience table and
timelines (`resilience`). It reads only the results tree (servebench.layout), never a job's code.
"""
