"""The plan of a pass, and reading one container by it.

A :class:`Plan` is made once per pass (:meth:`Planner.plan`) from the hierarchies and the readers: for
each reader whose hierarchy is mounted, a :class:`Step` with the mount, whether it speaks v1, and the
files to read in every container.  A reader with a v1 probe (block I/O) chooses its files from the
hierarchy's top directory, looked at again each pass.  :meth:`Plan.read` reads one container by the
plan: each step's files in the container's directory of that mount, parsed by the step's reader.

What a collector remembers about a container between passes is one :class:`Track`, kept per
(container key, inode) by :class:`Tracks`: a cgroup re-created under the same path (a restart) has a
new inode, so it starts with a clean record.

Two ways a pass reads less (the readers declare what they allow, readers.base):

* a file whose every value IgnoreValue leaves out is not in the plan (``Planner(wanted=...)``);
* a reader's ``rare_files`` (limits: ``pids.max``, ``memory.max``...) are read when a container is
  first seen and then every RARE_AGE seconds, their content kept in its Track in between; containers
  are spread over that time so that no pass reads them all.

And one way it parses less: a reader marked ``unchanged_reuse`` (files that stay the same while a
container is idle: block I/O, pids, pressure) whose files are byte for byte those of its last pass gives
that pass's samples again, unparsed.
"""

import collections
import zlib

from . import fs
from .readers.base import Limit

#: Seconds between two readings of a container's limit files (readers' ``rare_files``): a limit changed
#: with ``docker update`` shows within that time.
RARE_AGE = 30.0

#: One reader's part of a pass: ``files`` is a tuple of entries, each a tuple of alternatives.
Step = collections.namedtuple("Step", "reader mount_path v1 files")


class Track(object):
    """What passes remember about one container."""

    __slots__ = ("absent", "pid", "values", "rare", "rare_due", "last")

    def __init__(self):
        self.absent = set()     # names of files this cgroup does not have
        self.pid = None         # the PID whose network namespace was read last
        self.values = 0         # value lists it had in the last pass (before MaxValues cut any)
        self.rare = {}          # rare files' contents, as last read
        self.rare_due = None    # when they are read again (None: in its first pass)
        self.last = {}          # reader -> (its files' contents, their samples) of the last pass (unchanged_reuse)


class Tracks(object):
    """One :class:`Track` per (container key, inode), forgotten when the container is no longer found."""

    def __init__(self):
        self._by = {}

    def get(self, container):
        key = (container.key, container.inode)
        track = self._by.get(key)
        if track is None:
            track = self._by[key] = Track()
        return track

    def peek(self, container):
        return self._by.get((container.key, container.inode))

    def retain(self, containers):
        """Forget the containers not in ``containers`` (those of this pass)."""
        if len(self._by) > len(containers):
            live = set((c.key, c.inode) for c in containers)
            for key in [k for k in self._by if k not in live]:
                del self._by[key]

    def forget_absent(self):
        """Look for every file again (kernels and cgroups change: after a hierarchy refresh), and parse
        every file again (block device names may have changed)."""
        for track in self._by.values():
            track.absent.clear()
            track.last.clear()

    def __len__(self):
        return len(self._by)


def read_files(directory, files, absent, kept, warn_once, key, label, held=None, rare=()):
    """{name: bytes} of ``files`` (entries of alternatives, the first one present read) in ``directory``.

    A file found missing goes into ``absent`` and is not tried again; a file there but unreadable is
    logged once (under ``key``) and skipped.  Raises fs.Gone when the directory is gone.  ``held``: the
    content of ``rare`` files read before (taken instead of reading them; those read now are added)."""
    data = {}
    read = fs.read_cgroup_file
    for entry in files:
        for name in entry:
            if name in absent:
                continue
            if held is not None:
                content = held.get(name)
                if content is not None:
                    data[name] = content
                    break
            try:
                content = read(directory, name, kept)
            except fs.Gone:
                raise
            except OSError as e:
                warn_once((key, name, e.errno),
                          "%s: cannot read %s/%s: %s (skipped)" % (label, directory, name, e.strerror),
                          cause=("read", name, e.errno))
                break          # there, but unreadable: not a reason to read an alternative
            if content is None:
                absent.add(name)
                continue
            data[name] = content
            if held is not None and name in rare:
                held[name] = content
            break
    return data


class Plan(object):
    """The steps of one pass and the reading of a container by them."""

    __slots__ = ("steps", "warn_once", "now")

    def __init__(self, steps, warn_once, now=None):
        self.steps = steps
        self.warn_once = warn_once
        self.now = now          # the pass's clock, for when rare files are due (None: read every pass)

    def read(self, container, track, kept=None):
        """Samples of one container (every step whose mount the container is in).  Raises fs.Gone when
        it vanished; a file or a parse that fails costs that reader's figures only, logged once."""
        warn_once = self.warn_once
        absent = track.absent
        dirs = container.dirs
        held = track.rare
        last = track.last
        now, due = self.now, track.rare_due
        if now is None or due is None or now >= due:
            held.clear()        # read them all again in this pass
            if now is not None:
                # The next reading RARE_AGE from now; a container's second one sooner, by a share of its
                # own, so that containers started together spread their readings over the passes.
                share = 1.0
                if due is None:
                    share = (zlib.crc32(repr(container.key).encode("utf-8", "backslashreplace")) % 64 + 1) / 64.0
                track.rare_due = now + RARE_AGE * share
        out = []
        for reader, mount_path, v1, files in self.steps:
            directory = dirs.get(mount_path)
            if directory is None:
                continue
            rare = reader.rare_files
            data = read_files(directory, files, absent, kept, warn_once, container.key, container.cgroup,
                              held if rare else None, rare)
            if not data:
                continue
            reuse = reader.unchanged_reuse
            if reuse:
                before = last.get(reader)
                if before is not None and before[0] == data:
                    out += before[1]
                    continue
            bad = []
            # The one place that decides what a parser's fault costs.  A field the parser cannot use costs
            # that field (it is in ``bad``); parsers raise nothing else by their contract (readers.base),
            # so an exception here is a bug or a file no kernel writes: that reader's figures, this pass.
            try:
                samples = reader.parse_v1(data, bad) if v1 else reader.parse_v2(data, bad)
            except Exception as e:
                warn_once((container.key, reader.group, "parse"),
                          "%s: malformed %s data, %s figures skipped: %r"
                          % (container.cgroup, "/".join(sorted(data)), reader.group, e),
                          cause=("parse", reader.group, type(e).__name__))
                samples = None
            if reuse:
                # Only a clean parse is given again (what ``bad`` says is logged per pass as it comes).
                if bad or samples is None:
                    last.pop(reader, None)
                else:
                    last[reader] = (data, samples)
            if samples is None:
                samples = ()
            for entry in bad:
                if isinstance(entry, Limit):    # a limit that bit: per container
                    warn_once((container.key, reader.group, entry), "%s: %s" % (container.cgroup, entry),
                              cause=("limit", reader.group))
                    continue
                warn_once((reader.group, entry),
                          "%s: skipped %s in %s data (seen first in %s)"
                          % (reader.group, _describe(entry), "/".join(sorted(data)), container.cgroup),
                          cause=("bad", reader.group))
            out += samples
        return out

    def files(self, container, track=None):
        """The paths a pass reads for ``container`` now (alternatives resolved as the last pass found
        them, rare files held and not due left out): what the benchmark's C floor reads."""
        absent = track.absent if track is not None else ()
        held = {}
        if track is not None and self.now is not None and track.rare_due is not None and self.now < track.rare_due:
            held = track.rare
        out = []
        for reader, mount_path, _, files in self.steps:
            directory = container.dirs.get(mount_path)
            if directory is None:
                continue
            for names in files:
                for name in names:
                    if name in absent:
                        continue
                    if name not in held or name not in reader.rare_files:
                        out.append(directory + "/" + name)
                    break
        return out


class Planner(object):
    """Makes the :class:`Plan` of each pass for a set of readers.

    ``wanted(identifier pattern)``: False when every value of that pattern is left out (IgnoreValue);
    the files whose every value is left out (readers' ``yields``) are then not read, and a reader
    with no file left not at all."""

    def __init__(self, readers, warn_once, info_once, wanted=None, clock=None):
        self.readers = readers
        self.warn_once = warn_once
        self.info_once = info_once
        self.clock = clock
        self._top_absent = {}       # mount path -> names of files its top directory does not have
        self._unwanted = {}         # id(reader) -> names of its files whose every value is left out
        if wanted is not None:
            for reader in readers:
                self._unwanted[id(reader)] = frozenset(
                    name for name, identifiers in reader.yields.items() if not any(wanted(i) for i in identifiers))

    def reset(self):
        """Look at the top directories' files afresh (after a hierarchy refresh)."""
        self._top_absent.clear()

    def plan(self, hierarchies, kept=None, whole=False):
        """The plan for a pass over ``hierarchies`` (``kept``: the pass's fs.KeptFiles, or None);
        ``whole``: every file, also those whose every value IgnoreValue leaves out."""
        steps = []
        for reader in self.readers:
            mount = hierarchies.unified if reader.controller == "unified" else hierarchies.mount_for(reader.controller)
            if mount is None:
                continue
            unwanted = () if whole else self._unwanted.get(id(reader), ())
            if unwanted and all(name in unwanted for name in _names(reader.files_v1 + reader.files_v2)):
                continue            # nothing of it is wanted: no probe either
            files = tuple(e if isinstance(e, tuple) else (e,) for e in self._files(reader, mount, kept))
            if unwanted:
                files = tuple(e for e in files if not all(name in unwanted for name in e))
            if files:
                steps.append(Step(reader, mount.path, mount.version == 1, files))
        return Plan(steps, self.warn_once, self.clock() if self.clock is not None else None)

    def _files(self, reader, mount, kept):
        if mount.version != 1:
            return reader.files_v2
        if not reader.probe_v1:
            return reader.files_v1
        absent = self._top_absent.setdefault(mount.path, set())
        try:
            probe = read_files(mount.path, [(name,) for name in reader.probe_v1], absent, kept,
                               self.warn_once, ("top", mount.path), mount.path)
        except fs.Gone:
            probe = {}
        notes = []
        files = tuple(reader.select_v1(probe, notes))
        for note in notes:
            self.info_once((reader.group, mount.path, note), "%s: %s (%s)" % (reader.group, note, mount.path))
        return files


def _names(files):
    """Every file name of ``files`` (entries, each a name or a tuple of alternatives)."""
    for entry in files:
        if isinstance(entry, tuple):
            for name in entry:
                yield name
        else:
            yield entry


def _describe(entry):
    if isinstance(entry, bytes):
        return "malformed line %r" % entry[:80]
    return entry
