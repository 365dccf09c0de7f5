"""The Reader protocol: what a metric reader tells the pass, and what it is given back.

A reader reads nothing itself.  It says which hierarchy it reads (``controller``: a v1 controller name,
or ``"unified"`` for the cgroup2 mount whatever serves the controllers), which files it needs in each
container (``files_v1`` / ``files_v2``), and turns their contents into samples: ``parse_v1`` /
``parse_v2`` are pure functions from ``{file name: bytes}`` to ``[(type, type_instance, values)]``.

The parsers' contract (tests/unit/test_properties.py checks it with generated input):

* For ANY input ``{file name: bytes}`` (any names, any contents), ``parse_v1`` / ``parse_v2`` return a
  list of samples ``(type, type_instance, values)``: ``type`` is one of
  :data:`collectd_cgroups.identifiers.TYPES`, ``type_instance`` a non-empty str of at most 127 of the
  characters :func:`collectd_cgroups.identifiers.sanitize` keeps, ``values`` a tuple whose length is that
  type's number of data sources, every value a Python ``int`` (never a bool, never None) in the int64
  range ``-2**63 <= v < 2**63`` (collectd's DERIVE is an int64; gauges are held to the same bound).
  No ``(type, type_instance)`` comes twice.
* A field that cannot be parsed or is out of that range costs that field alone, and what derives from it,
  never the rest of the container's figures.  A field is a single-value file (``memory.current``), one
  ``KEY VALUE`` line (one memory.stat field), one CPU of ``cpuacct.usage_percpu``, one device's line (or
  one device's counter of one kind: its ``disk_octets``).  What derives from a field: ``working_set``
  (usage and inactive_file), a block I/O ``total`` (every device's counters of that kind).  Numbers are
  unsigned decimal ASCII digits, as the kernel writes its counts: ``max`` where a number is expected, an
  empty or whitespace-only file, a sign (``-1``), ``2**70``, non-ASCII digits (``١٢٣``), ``1_000``: each a
  bad field.
* Each bad field is described in ``bad`` (a list the caller gives; the caller logs each entry once): a
  ``bytes`` entry is a line whose shape is wrong, a ``str`` entry says what is wrong with a named field
  (the file, the key; not the changing value of a number, so that the same fault is the same entry in
  every pass).  ``max`` in a LIMIT file (``memory.max``, ``memory.high``, ``memory.swap.max``,
  ``pids.max``), as a kernel "no limit" value, means no limit: not dispatched, and not bad.
* A :class:`Limit` entry in ``bad`` is not a fault but a configured bound that bit (``MaxDevices``):
  the caller logs it once per container.
* Parsers raise nothing.  (The pass still catches any exception from a parse, as a last resort, and
  then loses that reader's figures of that container for the pass.)

Two refinements, both used by the block I/O reader:

* an entry of ``files_v1`` / ``files_v2`` may be a tuple of alternatives: the first one the cgroup has
  is read, the others not (``X_recursive``, ``X``);
* a reader with ``probe_v1`` files chooses its v1 files once per pass from the hierarchy's top directory:
  the pass reads the ``probe_v1`` files there and reads in each container what
  ``select_v1(probe, notes)`` returns (``notes`` are logged once).

Three declarations let the pass read and parse less:

* ``yields``: for each file, the identifiers (``type-type_instance``, as IgnoreValue names them; a
  trailing ``*`` for an open set) of every value that comes from it, or from it and others together.
  A file whose every identifier IgnoreValue leaves out is not read (the pass keeps its CollectOnExit
  reading whole).  A file not declared is always read.  tests/unit/test_reader_yields.py checks the
  declarations against what the parsers make of captured trees.
* ``rare_files``: files whose content changes only when someone changes a setting (limits): re-read
  every plan.RARE_AGE seconds, their last content reused in between.
* ``unchanged_reuse``: when a container's files of this reader are byte for byte those of its last pass,
  the pass takes that pass's samples instead of parsing them again (for files an idle container leaves
  alone; the samples of each container are then kept between passes).
"""


class Limit(str):
    """A ``bad`` entry that reports a configured bound that bit, not a malformed field: its text names
    the limit and the counts ("MaxDevices 64: 80 block devices, the first 64 by MAJ:MIN reported"), the
    same text for the same counts in every pass, so that the caller logs it once per container."""

    __slots__ = ()


class Reader(object):
    """Defaults: no files, nothing parsed, no probe.  Subclasses set ``group`` and ``controller``."""

    group = None        # the metric group (Metrics option) this reader belongs to
    controller = None   # the hierarchy read: a v1 controller name, or "unified"
    files_v1 = ()
    files_v2 = ()
    probe_v1 = ()
    yields = {}                 # file name -> identifiers of its values (see above)
    rare_files = frozenset()    # limits: re-read every plan.RARE_AGE seconds
    unchanged_reuse = False     # the last pass's samples when the files are unchanged

    def select_v1(self, probe, notes):
        """The v1 files to read in each container, given the ``probe_v1`` files of the top directory."""
        return self.files_v1

    def parse_v1(self, data, bad):
        return []

    def parse_v2(self, data, bad):
        return []
