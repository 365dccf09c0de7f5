"""The Reader protocol: what a metric reader tells the pass, and what it is given back.

A reader reads nothing itself.  It says which hierarchy it reads (``controller``: a v1 controller name,
or ``"unified"`` for the cgroup2 mount whatever serves the controllers), which files it needs in each
container (``files_v1`` / ``files_v2``), and turns their contents into samples: ``parse_v1`` /
``parse_v2`` are pure functions from ``{file name: bytes}`` to ``[(type, type_instance, values)]``.
Lines or fields they cannot use go to the ``bad`` list, for the caller to log once.

Two refinements, both used by the block I/O reader:

* an entry of ``files_v1`` / ``files_v2`` may be a tuple of alternatives: the first one the cgroup has
  is read, the others not (``X_recursive``, ``X``);
* a reader with ``probe_v1`` files chooses its v1 files once per pass from the hierarchy's top directory:
  the pass reads the ``probe_v1`` files there and reads in each container what
  ``select_v1(probe, notes)`` returns (``notes`` are logged once).
"""


class Reader(object):
    """Defaults: no files, nothing parsed, no probe.  Subclasses set ``group`` and ``controller``."""

    group = None        # the metric group (Metrics option) this reader belongs to
    controller = None   # the hierarchy read: a v1 controller name, or "unified"
    files_v1 = ()
    files_v2 = ()
    probe_v1 = ()

    def select_v1(self, probe, notes):
        """The v1 files to read in each container, given the ``probe_v1`` files of the top directory."""
        return self.files_v1

    def parse_v1(self, data, bad):
        return []

    def parse_v2(self, data, bad):
        return []
