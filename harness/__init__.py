"""Shared harness for tests and benchmarks (dev/test only: never in an image).

Launchers for real servers on free loopback ports (a whole Mynah stack, the
scale-out cluster behind Traefik, throwaway PostgreSQL clusters, SeaweedFS,
Traefik), the engine doubles those stacks register, and real sample inputs
(speech, portraits). ``tests/`` and ``bench/`` both import from here; helpers
only tests use live in ``tests/support/``."""
