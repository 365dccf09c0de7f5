"""collectd-cgroups: per-container CPU, memory and pids figures for collectd.

The read pass flows through one module per stage: hierarchy (cgroup mounts),
containers (walk, match, name), readers (pure parsers), collector (one pass,
faults contained), identifiers (the public naming contract), and either
plugin (collectd glue) or __main__ (the CLI).
"""

__version__ = "0.1.0"
