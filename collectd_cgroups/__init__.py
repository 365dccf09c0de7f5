"""collectd-cgroups: per-container CPU, memory, block I/O, network and pids figures for collectd.

The read pass flows through one module per stage: hierarchy (cgroup mounts),
containers (walk, match, name), readers (pure parsers), collector (one pass,
faults contained), identifiers (the public naming contract), and either
plugin (collectd glue) or __main__ (the CLI).
"""

#: The one version: setup.cfg reads it (attr:), packaging/debian/changelog must name it (a test checks).
__version__ = "0.2.0"
