"""Helpers several test modules share: ``from tests.support import netnsutil``.

- :mod:`~tests.support.fixtureutil`:      the fixture trees in tests/fixtures/ and the CLI over them
- :mod:`~tests.support.fake_collectd`:    a test double of collectd's ``collectd`` module
- :mod:`~tests.support.kernelutil`:       synthetic containers and independent sources on the real kernel
- :mod:`~tests.support.netnsutil`:        network namespaces, veths and "containers" of the tests' own (NetLab)
- :mod:`~tests.support.collectd_harness`: a real collectd daemon with the plugin
- :mod:`~tests.support.capture`:          copies live cgroups into a fixture tree (also a script:
  ``python -m tests.support.capture``)
"""

import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # tests/
CHECKOUT = os.path.dirname(TESTS)                                       # the checkout's root
FIXTURES = os.path.join(TESTS, "fixtures")                              # the fixture trees
