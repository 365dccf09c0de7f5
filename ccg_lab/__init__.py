"""ccg_lab: test and demo support for collectd-cgroups, not installed (not in the wheel, not in the .deb).

- :mod:`ccg_lab.synthetic`: synthetic containers (cgroups with real processes in them) for the tests,
  the benchmark (tests/bench/) and the demo;
- :mod:`ccg_lab.demo`: ``make demo`` (``python -m ccg_lab.demo`` from the checkout), demo containers
  for a host without any;
- :mod:`ccg_lab.graphite`: Debian's carbon-cache, whisper tools and graphite-web, private to a work
  directory, for the tests and ``make graphite``;
- :mod:`ccg_lab.procs`: stopping a process by its PID and polling, for the lab and tests/support;
- :mod:`ccg_lab.netlab`: a thread entering a network namespace (also for tests/support/netnsutil.py), and
  the demo's network namespaces, veths and traffic.

It uses the product (``collectd_cgroups``) like any other client, through absolute imports; the product
never imports it.
"""
