"""Property-based tests (hypothesis) of every parser: the readers' parse_v1 / parse_v2, readers.formats,
netlink.parse_link / parse_messages / dump, and the mountinfo and /proc/cgroups parsers.

Seeded from real files: the fixture trees under tests/fixtures/ (captured from real kernels, or written to
their formats) and, when run as root, this host's own top cgroups under /sys/fs/cgroup (read only; never
anything under process_api).  The strategies mutate those contents: a number replaced by ``max``, ``''``,
``-1``, ``2**70``, non-ASCII digits..., a file truncated, bytes inserted, lines duplicated or dropped,
random bytes.

The properties (readers.base states the contract):

* any input: a list of well-formed samples (type in identifiers.TYPES, values ints in the int64 range and
  as many as the type's data sources, type_instance a valid name, no identifier twice), nothing raised;
  ``bad`` entries are str or bytes;
* a bad single-value file costs exactly what that file being absent costs (bad ≡ absent), and is in bad
  (``max`` in a limit file: no limit, not bad);
* a bad value on one ``KEY VALUE`` line costs exactly what that line being absent costs;
* a bad counter of one device costs that device's figure of that kind and that kind's total, nothing else;
* the planned paths (formats.FlatPlans) give exactly the plain paths' samples and bad entries;
* netlink: only NetlinkError (a kernel error reply) is ever raised, the links before a malformed message
  are kept, and a dump over captured chunks ends without asking the socket for more than the kernel sent
  when the damage is inside a message body;
* hierarchy: any str or bytes in, a list of Mounts / a dict out, nothing raised.

Budget: well under a minute at the default settings (profile "ccg": 300 examples, derandomized, no database);
``CCG_HYPOTHESIS_EXAMPLES=N`` raises every test's max_examples to N.
"""

import glob
import os
import re
import struct

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from collectd_cgroups import hierarchy, identifiers, netlink, readers  # noqa: E402
from collectd_cgroups.readers import blkio, formats, memory  # noqa: E402
from tests.support import FIXTURES  # noqa: E402

_EXAMPLES = int(os.environ.get("CCG_HYPOTHESIS_EXAMPLES", "0") or 0)
settings.register_profile(
    "ccg", max_examples=_EXAMPLES or 300, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
settings.load_profile("ccg")

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
VALID_NAME = re.compile(r"^[A-Za-z0-9_.:+@=,-]{1,127}$")

# What a number may become: every one a bad number (and b"max" a no-limit in a limit file).
BAD_NUMBERS = [b"max", b"", b"-1", str(2 ** 70).encode(), "١٢٣".encode(), b"9223372036854775808",
               b"18446744073709551615", b"1_000", b"+5", b"0x10", b"1e3", b"\xff", b"12 34", b"nan"]
LIMIT_FILES = frozenset(("memory.max", "memory.high", "memory.swap.max", "pids.max"))

READERS = readers.build(readers.GROUPS, per_cpu=True)


# -- seeds: real files ---------------------------------------------------------------------------------------

def _cgroup_dirs():
    """Every cgroup directory of the fixture trees, and (as root) this host's top cgroups."""
    dirs = []
    for top in sorted(glob.glob(os.path.join(FIXTURES, "*", "sys", "fs", "cgroup"))
                      + sorted(glob.glob(os.path.join(FIXTURES, "*", "cgroup")))):
        for directory, subdirs, _ in os.walk(top):
            subdirs.sort()
            dirs.append(directory)
    if os.geteuid() == 0 and os.path.isdir("/sys/fs/cgroup"):
        for name in sorted(os.listdir("/sys/fs/cgroup")):
            d = os.path.join("/sys/fs/cgroup", name)
            if name != "process_api" and os.path.isdir(d) and not os.path.islink(d):
                dirs.append(d)        # the top directory only: never a child (process_api lives there)
        dirs.append("/sys/fs/cgroup")
    return dirs


def _read(directory, files):
    data = {}
    for entry in files:
        for name in (entry if isinstance(entry, tuple) else (entry,)):
            path = os.path.join(directory, name)
            try:
                with open(path, "rb") as f:
                    data[name] = f.read()
                break
            except OSError:
                continue
    return data


def _seeds():
    """[(reader index, version, data)], each distinct."""
    out, seen = [], set()
    for directory in _cgroup_dirs():
        for i, reader in enumerate(READERS):
            for version, files in ((1, reader.files_v1), (2, reader.files_v2)):
                data = _read(directory, files)
                if not data:
                    continue
                key = (i, version, tuple(sorted(data.items())))
                if key not in seen:
                    seen.add(key)
                    out.append((i, version, data))
    return out


SEEDS = _seeds()


def test_the_seeds_cover_every_reader_and_version():
    covered = set((i, v) for i, v, _ in SEEDS)
    for i, reader in enumerate(READERS):
        if reader.files_v1:
            assert (i, 1) in covered, reader
        if reader.files_v2:
            assert (i, 2) in covered, reader
    assert len(SEEDS) > 50


def parse(i, version, data, bad=None):
    """A fresh reader's parse (its plans as a new process has them) and one that has seen the input."""
    reader = READERS[i]
    bad = [] if bad is None else bad
    return (reader.parse_v1 if version == 1 else reader.parse_v2)(data, bad)


# -- the contract ---------------------------------------------------------------------------------------------

def check_samples(samples, bad):
    assert isinstance(samples, list)
    seen = set()
    for sample in samples:
        assert isinstance(sample, tuple) and len(sample) == 3, sample
        type_, ti, values = sample
        assert type_ in identifiers.TYPES, sample
        assert isinstance(ti, str) and VALID_NAME.match(ti), sample
        assert isinstance(values, tuple) and len(values) == len(identifiers.TYPES[type_]), sample
        for v in values:
            assert type(v) is int and INT64_MIN <= v <= INT64_MAX, sample
        assert (type_, ti) not in seen, sample
        seen.add((type_, ti))
    for entry in bad:
        assert isinstance(entry, (str, bytes)), entry


# -- mutations ------------------------------------------------------------------------------------------------

_NUMBER = re.compile(rb"[0-9]+")


@st.composite
def mutated(draw, content):
    """One mutation of ``content`` (bytes)."""
    kind = draw(st.sampled_from(["number", "number", "truncate", "insert", "duplicate", "drop", "random",
                                 "whole"]))
    lines = content.split(b"\n")
    if kind == "number":
        spans = [m.span() for m in _NUMBER.finditer(content)]
        if spans:
            a, b = draw(st.sampled_from(spans))
            return content[:a] + draw(st.sampled_from(BAD_NUMBERS)) + content[b:]
        kind = "whole"
    if kind == "truncate":
        return content[:draw(st.integers(0, len(content)))]
    if kind == "insert":
        at = draw(st.integers(0, len(content)))
        return content[:at] + draw(st.binary(min_size=1, max_size=8)) + content[at:]
    if kind == "duplicate":
        n = draw(st.integers(0, len(lines) - 1))
        return b"\n".join(lines[:n + 1] + lines[n:])
    if kind == "drop":
        n = draw(st.integers(0, len(lines) - 1))
        return b"\n".join(lines[:n] + lines[n + 1:])
    if kind == "random":
        return draw(st.binary(max_size=200))
    return draw(st.sampled_from(BAD_NUMBERS))


@st.composite
def mutated_seed(draw, max_mutations=3):
    i, version, data = draw(st.sampled_from(SEEDS))
    data = dict(data)
    names = sorted(data) + [f for f in _all_files(READERS[i], version) if f not in data]
    for _ in range(draw(st.integers(1, max_mutations))):
        name = draw(st.sampled_from(names))
        data[name] = draw(mutated(data.get(name, b"1\n")))
    return i, version, data


def _all_files(reader, version):
    out = []
    for entry in (reader.files_v1 if version == 1 else reader.files_v2):
        out += list(entry) if isinstance(entry, tuple) else [entry]
    return out


# -- readers --------------------------------------------------------------------------------------------------

def test_every_seed_parses_clean():
    """The real files themselves: well-formed samples, and (but for the seeds written to show faults)
    nothing in bad from the captured kernels' files."""
    for i, version, data in SEEDS:
        bad = []
        check_samples(parse(i, version, data, bad), bad)


@given(mutated_seed())
def test_any_mutation_gives_well_formed_samples(case):
    i, version, data = case
    bad = []
    check_samples(parse(i, version, data, bad), bad)


@given(st.sampled_from(range(len(READERS))), st.sampled_from([1, 2]),
       st.dictionaries(st.sampled_from(sorted(set(f for r in READERS for v in (1, 2) for f in _all_files(r, v))
                                              | {"unknown", ""})),
                       st.binary(max_size=120), max_size=6))
def test_random_bytes_in_any_file(i, version, data):
    bad = []
    check_samples(parse(i, version, data, bad), bad)


def _single_value_cases():
    """(reader index, version, data, file name) for every file of a seed that holds one number."""
    out = []
    for i, version, data in SEEDS:
        for name, content in sorted(data.items()):
            if re.match(rb"^(?:[0-9]+|max)\n?$", content):
                out.append((i, version, data, name))
    return out


SINGLE = _single_value_cases()


@given(st.sampled_from(SINGLE), st.sampled_from(BAD_NUMBERS + [b"  ", b"\n", b"max\n"]))
def test_a_bad_single_value_costs_what_its_absence_costs(case, token):
    i, version, data, name = case
    absent = dict(data)
    del absent[name]
    bad_absent, bad = [], []
    expected = parse(i, version, absent, bad_absent)
    got = parse(i, version, dict(data, **{name: token}), bad)
    assert got == expected
    check_samples(got, bad)
    if name in LIMIT_FILES and token.strip() == b"max":
        assert bad == bad_absent
    else:
        new = [e for e in bad if e not in bad_absent]
        assert len(new) == 1 and name in new[0] and "malformed" in new[0]


def _flat_line_cases():
    """(reader index, version, data, file name, line index) for each KEY VALUE line of the seeds' flat
    files whose key is there once."""
    out = []
    for i, version, data in SEEDS:
        for name in ("memory.stat", "cpu.stat", "cpuacct.stat", "memory.events"):
            content = data.get(name)
            if content is None:
                continue
            lines = content.split(b"\n")
            keys = [l.split(b" ")[0] for l in lines]
            for n, line in enumerate(lines):
                if re.match(rb"^[a-z_.0-9]+ [0-9]+$", line) and keys.count(keys[n]) == 1:
                    out.append((i, version, data, name, n))
    return out


FLAT_LINES = _flat_line_cases()


@given(st.sampled_from(FLAT_LINES), st.sampled_from(BAD_NUMBERS))
def test_a_bad_key_value_line_costs_what_its_absence_costs(case, token):
    i, version, data, name, n = case
    lines = data[name].split(b"\n")
    key = lines[n].split(b" ")[0]
    bad_line = lines[:n] + [key + b" " + token] + lines[n + 1:]
    no_line = lines[:n] + lines[n + 1:]
    bad_absent, bad = [], []
    expected = parse(i, version, dict(data, **{name: b"\n".join(no_line)}), bad_absent)
    got = parse(i, version, dict(data, **{name: b"\n".join(bad_line)}), bad)
    if b" " in token:                   # "key 12 34": three fields, a malformed line
        assert got == expected
    else:
        assert got == expected
        new = [e for e in bad if e not in bad_absent]
        assert len(new) == 1 and (key.decode() in str(new[0]))


def _device_cases():
    """(reader index, version, data, file name, line index, token span) for each device counter of the
    block I/O seeds that have one generation of v1 files (or io.stat)."""
    b = [n for n, r in enumerate(READERS) if isinstance(r, blkio.Blkio)][0]
    out = []
    for i, version, data in SEEDS:
        if i != b:
            continue
        if version == 1:
            gens = set(blkio._KIND_OF[name][0] for name in data if name in blkio._KIND_OF)
            if len(gens) != 1 or not all(blkio._KIND_OF[name][2] == 0 or name + "_recursive" not in data
                                         for name in data if name in blkio._KIND_OF):
                continue
            for name, content in sorted(data.items()):
                kind = blkio.GENERATIONS[list(gens)[0]].kinds[blkio._KIND_OF[name][1]][0]
                if kind not in ("bytes", "ops"):
                    continue
                for n, line in enumerate(content.split(b"\n")):
                    m = re.match(rb"^([0-9]+:[0-9]+) (Read|Write|Discard) ([0-9]+)$", line)
                    if m:
                        out.append((i, version, data, name, n, m.span(3), kind, m.group(1), m.group(2)))
        else:
            for n, line in enumerate(data.get("io.stat", b"").split(b"\n")):
                for m in re.finditer(rb"\b(r|w|d)(bytes|ios)=([0-9]+)", line):
                    op = {b"r": b"Read", b"w": b"Write", b"d": b"Discard"}[m.group(1)]
                    kind = "bytes" if m.group(2) == b"bytes" else "ops"
                    out.append((i, version, data, "io.stat", n, m.span(3), kind, line.split()[0], op))
    return out


DEVICES = _device_cases()


def test_the_device_seeds_are_there():
    assert any(c[1] == 1 for c in DEVICES) and any(c[1] == 2 for c in DEVICES)


@given(st.sampled_from(DEVICES), st.sampled_from([t for t in BAD_NUMBERS if b" " not in t and t]))
def test_a_bad_device_counter_costs_that_device_kind_and_total(case, token):
    i, version, data, name, n, (a, b), kind, dev, op = case
    lines = data[name].split(b"\n")
    lines[n] = lines[n][:a] + token + lines[n][b:]
    expected = parse(i, version, data)
    got = parse(i, version, dict(data, **{name: b"\n".join(lines)}))
    type_ = "disk_octets" if kind == "bytes" else "disk_ops"
    devname = READERS[i].names(dev.decode())
    if op == b"Discard":
        lost = {("total_bytes" if kind == "bytes" else "total_operations", "discard-" + devname)}
    else:
        lost = {(type_, devname), (type_, "total")}
    assert got == [s for s in expected if s[:2] not in lost]


# -- planned paths = plain paths ------------------------------------------------------------------------------

MEMORY = [n for n, r in enumerate(READERS) if isinstance(r, memory.Memory)][0]
MEMORY_SEEDS = [s for s in SEEDS if s[0] == MEMORY]


@given(st.sampled_from(MEMORY_SEEDS), st.booleans(), st.data())
def test_planned_memory_parse_is_the_plain_parse(seed, mutate, draw):
    _, version, data = seed
    data = dict(data)
    if mutate:
        name = draw.draw(st.sampled_from(sorted(data)))
        data[name] = draw.draw(mutated(data[name]))
    r = memory.Memory()
    bad_planned, bad_plain = [], []
    if version == 1:
        planned = r.parse_v1(data, bad_planned)
        planned_again = r.parse_v1(data, [])                # the plan now made: used
        plain = r._parse_v1(data, bad_plain)
    else:
        planned = r.parse_v2(data, bad_planned)
        planned_again = r.parse_v2(data, [])
        plain = r._parse_v2(data, bad_plain)
    assert planned == plain == planned_again
    assert sorted(map(repr, bad_planned)) == sorted(map(repr, bad_plain))
    check_samples(plain, bad_plain)


_FLAT_FILES = [d[name] for _, _, d in SEEDS for name in ("memory.stat", "cpu.stat", "cpuacct.stat")
               if name in d]


@given(st.one_of(st.sampled_from(_FLAT_FILES), st.sampled_from(_FLAT_FILES).flatmap(mutated),
                 st.binary(max_size=100),
                 st.lists(st.tuples(st.sampled_from([b"a", b"b", b"a\tb", b"", b"\xff", b"c.d", b" ", b"\x0b"]),
                                    st.sampled_from([b"1", b"12", b"", b"-1", b"9" * 18, b"9" * 19, b"x",
                                                     b"9223372036854775807", b"9223372036854775808",
                                                     b"9223372036854771712", b"0" * 19, b"1" + b"0" * 19])),
                          max_size=5).map(lambda kv: b"".join(k + b" " + v + b"\n" for k, v in kv))))
def test_flat_plans_read_as_flat_keyed(data):
    plans = formats.FlatPlans(lambda index: index)
    bad = []
    plain = formats.flat_keyed(data, bad)
    for entry in bad:
        assert isinstance(entry, (str, bytes))
    for v in plain.values():
        assert type(v) is int and 0 <= v <= INT64_MAX
    got = plans.get(data)
    if got is not None:
        index, values = got
        assert bad == []
        assert dict((k, values[i]) for k, i in index.items()) == plain
        assert all(type(v) is int and 0 <= v <= INT64_MAX for v in values)


@given(st.one_of(st.binary(max_size=40), st.sampled_from(BAD_NUMBERS),
                 st.integers(-2 ** 80, 2 ** 80).map(lambda n: str(n).encode()),
                 st.text(max_size=12).map(lambda t: t.encode("utf-8"))))
def test_formats_numbers(token):
    bad = []
    value = formats.single(token, "f", bad)
    if value is None:
        assert len(bad) == 1 and bad[0].startswith("malformed f: ")
    else:
        assert type(value) is int and 0 <= value <= INT64_MAX and bad == []
        assert value == int(token.strip()) and token.strip().isdigit()
    assert formats.number(token.strip()) == value
    limit = formats.limit(token, "f", [])
    assert limit == (None if token.strip() == b"max" else value)
    for v in formats.numbers(token):
        assert v is None or (type(v) is int and 0 <= v <= INT64_MAX)
    formats.nested_keyed(token, [])
    assert isinstance(formats.what(token), str)


@given(st.sampled_from([s for s in SEEDS if isinstance(READERS[s[0]], blkio.Blkio) and s[1] == 1]),
       st.data())
def test_blkio_probe_selection_any_top_directory(seed, draw):
    _, _, data = seed
    probe = {}
    for gen in blkio.GENERATIONS:
        base = data.get(gen.probe + "_recursive", data.get(gen.probe))
        if base is not None and draw.draw(st.booleans()):
            probe[gen.probe] = draw.draw(mutated(base))
    notes = []
    files = READERS[seed[0]].select_v1(probe, notes)
    assert isinstance(files, tuple) and all(isinstance(f, tuple) for f in files)


@given(st.integers(1, 8), st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(0, 2 ** 63),
                                             st.integers(0, 2 ** 63)), max_size=20))
def test_blkio_max_devices_and_totals(limit, devices):
    text = b"".join(b"%d:%d rbytes=%d wbytes=%d rios=1 wios=1\n" % d for d in devices)
    r = blkio.Blkio(max_devices=limit)
    bad = []
    out = r.parse_v2({"io.stat": text}, bad)
    check_samples(out, [e for e in bad])
    distinct = sorted(set((a, b) for a, b, _, _ in devices))
    if not distinct:
        assert out == [] and bad == []
        return
    reported = [ti for t, ti, _ in out if t == "disk_ops" and ti != "total"]
    assert reported == ["%d_%d" % d for d in distinct[:limit]]
    limits = [e for e in bad if isinstance(e, blkio.Limit)]
    assert len(limits) == (len(distinct) > limit)
    totals = dict((t, v) for t, ti, v in out if ti == "total")
    assert totals["disk_ops"] == (len(distinct), len(distinct))
    last = {}
    for a, b, rb, wb in devices:
        last[(a, b)] = (rb, wb)             # a device listed twice: its last line
    sums = (sum(v[0] for v in last.values()), sum(v[1] for v in last.values()))
    assert totals.get("disk_octets") == (sums if max(sums) <= INT64_MAX else None)


# -- netlink ----------------------------------------------------------------------------------------------------

NETLINK = os.path.join(FIXTURES, "netlink")
CHUNKS = {}
for _path in sorted(glob.glob(os.path.join(NETLINK, "*.bin"))):
    _name, _n = os.path.basename(_path)[:-4].rsplit(".", 1)
    with open(_path, "rb") as _f:
        CHUNKS.setdefault(_name, []).append((int(_n), _f.read()))
CHUNKS = dict((k, [c for _, c in sorted(v)]) for k, v in CHUNKS.items())
ALL_CHUNKS = [c for v in CHUNKS.values() for c in v]


def _frames(chunk):
    out, pos = [], 0
    while pos + 16 <= len(chunk):
        mlen, mtype = struct.unpack_from("=IH", chunk, pos)
        if mlen < 16 or pos + mlen > len(chunk):
            break
        out.append((pos, mlen, mtype))
        pos += (mlen + 3) & ~3
    return out


def _check_links(links):
    for link in links:
        assert isinstance(link, netlink.Link)
        assert type(link.index) is int
        assert link.name is None or isinstance(link.name, str)
        assert link.kind is None or isinstance(link.kind, str)
        assert link.stats is None or (len(link.stats) == 16 and all(type(v) is int for v in link.stats))


@st.composite
def mutated_chunk(draw):
    chunk = bytearray(draw(st.sampled_from(ALL_CHUNKS)))
    kind = draw(st.sampled_from(["byte", "u16", "truncate", "insert", "random"]))
    if kind == "byte" and chunk:
        at = draw(st.integers(0, len(chunk) - 1))
        chunk[at] = draw(st.integers(0, 255))
    elif kind == "u16" and len(chunk) >= 2:
        at = draw(st.integers(0, len(chunk) - 2))
        struct.pack_into("=H", chunk, at, draw(st.sampled_from([0, 1, 3, 4, 5, 8, 0xffff])))
    elif kind == "truncate":
        del chunk[draw(st.integers(0, len(chunk))):]
    elif kind == "insert":
        at = draw(st.integers(0, len(chunk)))
        chunk[at:at] = draw(st.binary(min_size=1, max_size=8))
    else:
        chunk = bytearray(draw(st.binary(max_size=300)))
    return bytes(chunk)


@given(mutated_chunk(), st.booleans())
def test_parse_messages_raises_only_netlink_errors(chunk, as_memoryview):
    links, nsids, stats, bad = [], [], {}, []
    buf = memoryview(chunk) if as_memoryview else chunk
    try:
        done = netlink.parse_messages(buf, links, nsids, stats=stats, bad=bad)
    except netlink.NetlinkError:
        return
    assert done in (True, False)
    _check_links(links)
    assert all(n is None or type(n) is int for n in nsids)
    for counters in stats.values():
        assert len(counters) == 16
    assert all(isinstance(b, str) for b in bad)


@given(st.sampled_from([c for c in ALL_CHUNKS if any(m[2] == netlink.RTM_NEWLINK for m in _frames(c))]),
       st.data())
def test_a_damaged_link_message_keeps_the_links_before_it(chunk, draw):
    frames = [f for f in _frames(chunk) if f[2] == netlink.RTM_NEWLINK]
    k = draw.draw(st.integers(0, len(frames) - 1))
    pos, mlen, _ = frames[k]
    at = draw.draw(st.integers(pos + 16, pos + mlen - 1))     # inside its body: the framing holds
    damaged = bytearray(chunk)
    if draw.draw(st.booleans()) and at + 2 <= pos + mlen:
        struct.pack_into("=H", damaged, at, draw.draw(st.sampled_from([0, 1, 3, 0xffff])))
    else:
        damaged[at] = draw.draw(st.integers(0, 255))
    plain, links = [], []
    done = netlink.parse_messages(chunk, plain, [])
    assert netlink.parse_messages(bytes(damaged), links, []) == done     # the DONE is not lost
    assert links[:k] == plain[:k]
    _check_links(links)


class _Socket(object):
    """Replays chunks; a recv past the last one is what SO_RCVTIMEO makes of a reply that never ends."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def send(self, data):
        return len(data)

    def recv_into(self, buf):
        if not self.chunks:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        c = self.chunks.pop(0)
        n = min(len(c), len(buf))
        buf[:n] = c[:n]
        return n


@given(st.sampled_from(["links", "links_nsid", "host_veth", "stats"]), st.data())
def test_dump_over_damaged_chunks_ends(name, draw):
    parts = [bytearray(c) for c in CHUNKS[name]]
    k = draw.draw(st.integers(0, len(parts) - 1))
    frames = [f for f in _frames(parts[k]) if f[2] in (netlink.RTM_NEWLINK, netlink.RTM_NEWSTATS)]
    if frames:
        pos, mlen, _ = draw.draw(st.sampled_from(frames))
        at = draw.draw(st.integers(pos + 16, pos + mlen - 2))
        struct.pack_into("=H", parts[k], at, draw.draw(st.sampled_from([0, 1, 3, 7, 0xffff])))
    sock = _Socket(bytes(p) for p in parts)
    if name == "stats":
        stats = netlink.dump_stats(sock)
        assert all(len(v) == 16 for v in stats.values())
    else:
        links, nsids = netlink.dump(sock, b"", nsid_replies=1 if name == "links_nsid" else 0)
        _check_links(links)
    assert sock.chunks == []        # every chunk the kernel sent read, none waited for beyond them


@given(st.lists(mutated_chunk(), min_size=1, max_size=3))
def test_dump_of_anything_ends_or_raises_an_os_error(parts):
    try:
        netlink.dump(_Socket(parts), b"", nsid_replies=1)
    except OSError:                 # NetlinkError, or the EAGAIN of a reply without its end
        pass
    try:
        netlink.dump_stats(_Socket(parts))
    except OSError:
        pass
    try:
        netlink.get_nsid(_Socket(parts), 3)
    except OSError:
        pass


@given(st.binary(max_size=80), st.integers(-8, 100), st.integers(-8, 100))
def test_parse_link_raises_only_malformed(buf, start, end):
    try:
        link = netlink.parse_link(buf, start, end)
    except netlink.Malformed:
        return
    _check_links([link])


# -- hierarchy ----------------------------------------------------------------------------------------------------

def _proc_files(name):
    out = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*", "proc", "**", name), recursive=True)):
        with open(path, "rb") as f:
            out.append(f.read())
    if os.geteuid() == 0:
        try:
            with open("/proc/self/" + name if name == "mountinfo" else "/proc/" + name, "rb") as f:
                out.append(f.read())
        except OSError:
            pass
    return out


MOUNTINFO = _proc_files("mountinfo")
PROC_CGROUPS = _proc_files("cgroups")


def test_hierarchy_seeds_are_there():
    assert MOUNTINFO and PROC_CGROUPS
    assert any(hierarchy.parse_mountinfo(m) for m in MOUNTINFO)


def _text(draw, seeds):
    content = draw(st.sampled_from(seeds))
    content = draw(mutated(content))
    if draw(st.booleans()):
        return content.decode("utf-8", "surrogateescape")
    return content


@given(st.data(), st.sampled_from(["", "/tmp/root"]))
def test_parse_mountinfo_any_text(draw, prefix):
    text = _text(draw.draw, MOUNTINFO) if draw.draw(st.booleans()) else draw.draw(
        st.one_of(st.text(max_size=200), st.binary(max_size=200)))
    mounts = hierarchy.parse_mountinfo(text, prefix)
    assert isinstance(mounts, list)
    for m in mounts:
        assert m.version in (1, 2) and m.path.startswith(prefix + "/") and m.root.startswith("/")
        assert "\0" not in m.path
        m.dir_for("/a/b")
    h = hierarchy.Hierarchies(mounts)
    h.describe()
    h.walk_mounts()


@given(st.data())
def test_parse_proc_cgroups_any_text(draw):
    text = _text(draw.draw, PROC_CGROUPS) if draw.draw(st.booleans()) else draw.draw(
        st.one_of(st.text(max_size=200), st.binary(max_size=200)))
    known = hierarchy.parse_proc_cgroups(text)
    for name, (hid, enabled) in known.items():
        assert isinstance(name, str) and type(hid) is int and hid >= 0 and enabled in (True, False)


def test_hierarchy_parsers_on_the_seeds_are_unchanged_by_bytes():
    for m in MOUNTINFO:
        assert repr(hierarchy.parse_mountinfo(m)) == repr(hierarchy.parse_mountinfo(m.decode("utf-8",
                                                                                             "surrogateescape")))
    for c in PROC_CGROUPS:
        assert hierarchy.parse_proc_cgroups(c) == hierarchy.parse_proc_cgroups(c.decode())
    with pytest.raises(TypeError):
        hierarchy.parse_mountinfo(None)
