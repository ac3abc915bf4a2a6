"""The send-lag bound of the tests whose subject is not the generator's own timing (a CLI's
gates, an installation, a fault's path, how workers split a schedule).

The generator's timing is tested at the default bound (5 ms: tests/test_loadgen_e2e.py's
slow-answers test, the loadgen capacity benchmark). On a shared host whose CPU was busy
elsewhere, sends went late at p99 by 5-9 ms at 20 req/s and by 18-38 ms at 300 req/s with two
workers on one core (CI and by hand, 2026-12-01; docs/loadgen.md says 1-2 ms on a quiet host),
which failed tests of everything else. This bound still catches a generator that stalls."""

SEND_LAG_P99_MAX_MS = 100.0
