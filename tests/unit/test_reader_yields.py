"""The readers' declarations that let a pass read less (readers.base): ``yields`` checked against what
the parsers make of every directory of the fixture trees (captured from real kernels), and their use by
the pass: files whose every value IgnoreValue leaves out are not read, limit files (``rare_files``) are
read every plan.RARE_AGE seconds, CollectOnExit's reading stays whole, and the readers marked
``unchanged_reuse`` parse nothing when their files are unchanged."""

import fnmatch
import os
import shutil

import pytest

from collectd_cgroups import plan, readers
from collectd_cgroups.collector import Collector, ValueFilter
from collectd_cgroups.config import Options
from tests.support import fixtureutil as fu

FIXTURES = os.path.dirname(fu.tree("v2-pure"))
READERS = readers.build(readers.GROUPS, per_cpu=True)


def _names(files):
    return [name for entry in files for name in (entry if isinstance(entry, tuple) else (entry,))]


def _samples_dirs():
    """(reader, parse, directory, {file: bytes}) for every fixture directory holding a reader's files."""
    out = []
    for dirpath, _, filenames in os.walk(FIXTURES):
        present = set(filenames)
        for reader in READERS:
            for files, parse in ((reader.files_v1, reader.parse_v1), (reader.files_v2, reader.parse_v2)):
                names = [n for n in _names(files) if n in present]
                if names:
                    data = {}
                    for n in names:
                        with open(os.path.join(dirpath, n), "rb") as f:
                            data[n] = f.read()
                    out.append((reader, parse, dirpath, data))
    return out


SAMPLED = _samples_dirs()


def _ids(samples):
    return set("%s-%s" % (t, ti) if ti else t for t, ti, _ in samples)


def test_every_file_of_the_readers_but_memory_stat_is_declared_with_a_trailing_star_at_most():
    for reader in READERS:
        for name in _names(reader.files_v1 + reader.files_v2):
            if name == "memory.stat":       # fields of several types: always read
                assert name not in reader.yields
                continue
            assert name in reader.yields, (type(reader).__name__, name)
        for name, ids in reader.yields.items():
            assert ids and all("*" not in i[:-1] and "?" not in i and "[" not in i for i in ids), (name, ids)
        assert reader.rare_files <= set(reader.yields)


def test_the_fixture_trees_hold_every_reader_and_most_files():
    seen = {}
    for reader, _, _, data in SAMPLED:
        seen.setdefault(type(reader).__name__, set()).update(data)
    assert set(seen) == {"CpuUsage", "CpuThrottling", "Memory", "Blkio", "Pids", "Pressure"}
    assert {"cpuacct.usage_percpu", "memory.events", "memory.swap.max", "pids.max", "io.stat",
            "blkio.io_queued_recursive", "blkio.sectors_recursive", "blkio.bfq.io_serviced_recursive",
            "blkio.throttle.io_service_bytes", "memory.pressure"} <= set().union(*seen.values())


@pytest.mark.parametrize("n", range(len(SAMPLED)), ids=lambda n: "%s:%s" % (
    type(SAMPLED[n][0]).__name__, os.path.relpath(SAMPLED[n][2], FIXTURES)))
def test_what_a_file_yields_is_declared(n):
    """Without a file, only values its declaration names go (or change): so a file left out because
    IgnoreValue leaves out all it declares costs nothing that is kept."""
    reader, parse, _, data = SAMPLED[n]
    full = {(t, ti): v for t, ti, v in parse(data, [])}
    for name in data:
        rest = dict((k, v) for k, v in data.items() if k != name)
        without = {(t, ti): v for t, ti, v in parse(rest, [])}
        changed = set(k for k in full if without.get(k) != full[k]) | (set(without) - set(full))
        declared = reader.yields.get(name, ("*",))
        for t, ti in changed:
            ident = "%s-%s" % (t, ti) if ti else t
            assert any(fnmatch.fnmatchcase(ident, d) for d in declared), (name, ident, declared)


@pytest.mark.parametrize("identifier, patterns, wanted", [
    ("count-pids_limit", ["count-pids_limit"], False),
    ("count-pids_limit", ["count-*"], False),
    ("count-pids_limit", ["count-pids"], True),
    ("cpu-cpu*", ["cpu-*"], False),
    ("cpu-cpu*", ["*"], False),
    ("cpu-cpu*", ["cpu-cpu1*"], True),          # cpu-cpu0 is still wanted
    ("cpu-cpu*", ["cpu-cpu?"], True),           # cpu-cpu10 is still wanted
    ("disk_octets-*", ["disk_*"], False),
    ("disk_octets-*", ["disk_octets-[a-z]*"], True),
    ("derive-memory_*", ["derive-memory_oom*"], True),
])
def test_wanted_leaves_a_set_out_only_when_certain(identifier, patterns, wanted):
    assert ValueFilter(patterns).wanted(identifier) is wanted


def _tree(tmp_path):
    root = str(tmp_path / "root")
    shutil.copytree(fu.tree("v2-pure"), root, symlinks=True)
    return root


def _collector(root, ignore=(), clock=None):
    kw = {"clock": clock} if clock is not None else {}
    return Collector(Options(root=root, groups=readers.GROUPS, ignore_values=list(ignore)), **kw)


def _files(col):
    containers = col.discover()
    assert containers
    return set(os.path.basename(p) for c in containers for p in col.files_read(c)), containers


def test_files_whose_values_are_all_left_out_are_not_read(tmp_path):
    root = _tree(tmp_path)
    every, _ = _files(_collector(root))
    assert {"pids.max", "pids.current", "cpu.pressure", "memory.peak", "memory.events"} <= every
    col = _collector(root, ["count-pids_limit", "total_time_in_ms-pressure_*", "memory-max_usage",
                            "derive-memory_oom*"])
    fewer, containers = _files(col)
    assert every - fewer == {"pids.max", "cpu.pressure", "memory.pressure", "io.pressure", "memory.peak"}
    # what is kept is the same values as without the patterns, less those they name
    whole = {r.instance: _ids(r.samples) for r in _collector(root).collect()}
    pruned = {r.instance: _ids(r.samples) for r in col.collect()}
    keep = ValueFilter(["count-pids_limit", "total_time_in_ms-pressure_*", "memory-max_usage", "derive-memory_oom*"])
    assert pruned == {i: set(x for x in ids if keep.wanted(x)) for i, ids in whole.items()}
    # CollectOnExit's final reading reads every file
    samples, _ = col.read_final(containers[0])
    assert ("memory", "max_usage") in set(s[:2] for s in samples)


def test_limits_are_read_every_rare_age_seconds_and_when_first_seen(tmp_path):
    root = _tree(tmp_path)
    now = [1000.0]
    col = _collector(root, clock=lambda: now[0])
    results = {r.instance: r for r in col.collect()}
    name, first = next((i, r) for i, r in results.items() if ("count", "pids_limit") in set(s[:2] for s in r.samples))
    directory = next(d for d in first.container.dirs.values() if "pids.max" in os.listdir(d))

    def limit():
        values = dict((s[:2], s[2]) for s in {x.instance: x for x in col.collect()}[name].samples)
        return values.get(("count", "pids_limit")), values.get(("count", "pids"))

    before = limit()
    with open(os.path.join(directory, "pids.max"), "w") as f:
        f.write("4242\n")
    with open(os.path.join(directory, "pids.current"), "w") as f:
        f.write("7\n")
    now[0] += 1
    assert limit() == (before[0], (7,))                 # the count follows at once, the limit later
    now[0] += plan.RARE_AGE
    assert limit() == ((4242,), (7,))
    # a new track (a restarted container, or CollectOnExit's reading) reads it at once
    samples = col.planner.plan(col.hierarchies()).read(first.container, plan.Track())
    assert ("count", "pids_limit", (4242,)) in samples


def test_the_first_readings_after_start_are_spread_over_rare_age(tmp_path):
    root = _tree(tmp_path)
    now = [0.0]
    col = _collector(root, clock=lambda: now[0])
    col.collect()
    dues = sorted(col.tracks.peek(c).rare_due for c in col.discover())
    assert len(dues) >= 5 and 0 < dues[0] and dues[-1] <= plan.RARE_AGE and len(set(dues)) >= len(dues) // 2


def test_unchanged_files_give_the_last_samples_without_a_parse(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    col = _collector(root)
    blkio = next(r for r in col.readers if r.group == "blkio")
    assert blkio.unchanged_reuse and not next(r for r in col.readers if r.group == "memory").unchanged_reuse
    parses = []
    real = blkio.parse_v2
    monkeypatch.setattr(blkio, "parse_v2", lambda data, bad: parses.append(1) or real(data, bad))
    first = {r.instance: r.samples for r in col.collect()}
    n = len(parses)
    assert n >= 3
    second = {r.instance: r.samples for r in col.collect()}
    assert len(parses) == n and second == first                 # nothing parsed again, the same samples
    # one container's io.stat changes: that one is parsed again, and its new figures come out
    name, samples = next((i, s) for i, s in first.items() if any(x[:2] == ("disk_octets", "total") for x in s))
    container = next(c for c in col.discover() if col.naming.name(c) == name)
    directory = next(d for d in container.dirs.values() if os.path.exists(os.path.join(d, "io.stat")))
    with open(os.path.join(directory, "io.stat"), "w") as f:
        f.write("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n")
    third = {r.instance: r.samples for r in col.collect()}
    assert len(parses) == n + 1
    assert ("disk_octets", "total", (4096, 8192)) in third[name]
    assert {i: s for i, s in third.items() if i != name} == {i: s for i, s in first.items() if i != name}
    # after a refresh of the hierarchies (device names may change), everything is parsed again
    col.tracks.forget_absent()
    col.collect()
    assert len(parses) == 2 * n + 1


def test_a_parse_with_faults_is_not_reused(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    col = _collector(root)
    pids = next(r for r in col.readers if r.group == "pids")
    for c in col.discover():
        for d in c.dirs.values():
            if os.path.exists(os.path.join(d, "pids.current")):
                with open(os.path.join(d, "pids.current"), "w") as f:
                    f.write("-1\n")             # a bad field: reported, never reused
    parses = []
    real = pids.parse_v2
    monkeypatch.setattr(pids, "parse_v2", lambda data, bad: parses.append(1) or real(data, bad))
    col.collect()
    n = len(parses)
    col.collect()
    assert n >= 3 and len(parses) == 2 * n
