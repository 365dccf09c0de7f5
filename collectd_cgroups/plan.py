"""The plan of a pass, and reading one container by it.

A :class:`Plan` is made once per pass (:meth:`Planner.plan`) from the hierarchies and the readers: for
each reader whose hierarchy is mounted, a :class:`Step` with the mount, whether it speaks v1, and the
files to read in every container.  A reader with a v1 probe (block I/O) chooses its files from the
hierarchy's top directory, looked at again each pass.  :meth:`Plan.read` reads one container by the
plan: each step's files in the container's directory of that mount, parsed by the step's reader.

What a collector remembers about a container between passes is one :class:`Track`, kept per
(container key, inode) by :class:`Tracks`: a cgroup re-created under the same path (a restart) has a
new inode, so it starts with a clean record.
"""

import collections

from . import fs
from .readers.base import Limit

#: One reader's part of a pass: ``files`` is a tuple of entries, each a tuple of alternatives.
Step = collections.namedtuple("Step", "reader mount_path v1 files")


class Track(object):
    """What passes remember about one container."""

    __slots__ = ("absent", "pid", "values")

    def __init__(self):
        self.absent = set()     # names of files this cgroup does not have
        self.pid = None         # the PID whose network namespace was read last
        self.values = 0         # value lists it had in the last pass (before MaxValues cut any)


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
        """Look for every file again (kernels and cgroups change: after a hierarchy refresh)."""
        for track in self._by.values():
            track.absent.clear()

    def __len__(self):
        return len(self._by)


def read_files(directory, files, absent, kept, warn_once, key, label):
    """{name: bytes} of ``files`` (entries of alternatives, the first one present read) in ``directory``.

    A file found missing goes into ``absent`` and is not tried again; a file there but unreadable is
    logged once (under ``key``) and skipped.  Raises fs.Gone when the directory is gone."""
    data = {}
    read = fs.read_cgroup_file
    for entry in files:
        for name in entry:
            if name in absent:
                continue
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
            break
    return data


class Plan(object):
    """The steps of one pass and the reading of a container by them."""

    __slots__ = ("steps", "warn_once")

    def __init__(self, steps, warn_once):
        self.steps = steps
        self.warn_once = warn_once

    def read(self, container, track, kept=None):
        """Samples of one container (every step whose mount the container is in).  Raises fs.Gone when
        it vanished; a file or a parse that fails costs that reader's figures only, logged once."""
        warn_once = self.warn_once
        absent = track.absent
        dirs = container.dirs
        out = []
        for reader, mount_path, v1, files in self.steps:
            directory = dirs.get(mount_path)
            if directory is None:
                continue
            data = read_files(directory, files, absent, kept, warn_once, container.key, container.cgroup)
            if not data:
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
        them): what the benchmark's C floor reads."""
        absent = track.absent if track is not None else ()
        out = []
        for _, mount_path, _, files in self.steps:
            directory = container.dirs.get(mount_path)
            if directory is None:
                continue
            for names in files:
                for name in names:
                    if name not in absent:
                        out.append(directory + "/" + name)
                        break
        return out


class Planner(object):
    """Makes the :class:`Plan` of each pass for a set of readers."""

    def __init__(self, readers, warn_once, info_once):
        self.readers = readers
        self.warn_once = warn_once
        self.info_once = info_once
        self._top_absent = {}       # mount path -> names of files its top directory does not have

    def reset(self):
        """Look at the top directories' files afresh (after a hierarchy refresh)."""
        self._top_absent.clear()

    def plan(self, hierarchies, kept=None):
        """The plan for a pass over ``hierarchies`` (``kept``: the pass's fs.KeptFiles, or None)."""
        steps = []
        for reader in self.readers:
            mount = hierarchies.unified if reader.controller == "unified" else hierarchies.mount_for(reader.controller)
            if mount is None:
                continue
            files = self._files(reader, mount, kept)
            if files:
                steps.append(Step(reader, mount.path, mount.version == 1,
                                  tuple(e if isinstance(e, tuple) else (e,) for e in files)))
        return Plan(steps, self.warn_once)

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


def _describe(entry):
    if isinstance(entry, bytes):
        return "malformed line %r" % entry[:80]
    return entry
