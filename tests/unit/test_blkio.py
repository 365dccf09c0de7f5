"""Block I/O: the parsers, the choice of v1 file generation, device names, the fixture trees
(blkio-v1-cfq, blkio-v1-throttle, blkio-v1-bfq, blkio-v2-iostat, and the blkio files of the
other trees), what a pass reads, and bad input made at test time from copies of the trees.

Expected figures come from the fixture files through fixtureutil's own small parsers, or are
spelled out from the trees' README tables."""

import json
import os
import shutil

import pytest

from collectd_cgroups import devices, fs, identifiers
from collectd_cgroups.readers import blkio
from collectd_cgroups.readers.blkio import Blkio
from tests.support import fixtureutil as fu

MiB = 1 << 20


def rwstat_text(devs, discard=True, total=True):
    """{dev: (read, write, discard)} -> the kernel's rwstat format."""
    lines, grand = [], 0
    for dev, (r, w, d) in devs.items():
        t = r + w + (d if discard else 0)
        lines += ["%s Read %d" % (dev, r), "%s Write %d" % (dev, w), "%s Sync %d" % (dev, r),
                  "%s Async %d" % (dev, t - r)]
        if discard:
            lines.append("%s Discard %d" % (dev, d))
        lines.append("%s Total %d" % (dev, t))
        grand += t
    if total:
        lines.append("Total %d" % grand)
    return ("\n".join(lines) + "\n").encode()


def samples(items):
    return {(t, ti): v for t, ti, v in items}


# -- parsers -----------------------------------------------------------------------------------


def test_rwstat_takes_read_write_discard_and_never_the_sums():
    bad = []
    parsed = blkio.rwstat(rwstat_text({"8:0": (100, 200, 50), "259:0": (7, 0, 0)}), bad)
    assert parsed == {b"8:0": [100, 200, 50], b"259:0": [7, 0, 0]}
    assert bad == []
    # no Discard line on kernels before 4.19: discard unknown, not 0
    assert blkio.rwstat(rwstat_text({"8:0": (1, 2, 0)}, discard=False), bad) == {b"8:0": [1, 2, None]}
    # "Total 0" only: no device
    assert blkio.rwstat(b"Total 0\n", bad) == {} and bad == []


def test_rwstat_unknown_operation_and_garbage_cost_only_their_line():
    bad = []
    text = (b"8:0 Read 10\n8:0 Flush 99\n8:0 Write 20\n8:32 Write x12\n8:48 Read\nrubbish\n"
            b"8:16 Read 5\n8:16 Write 6\n8:0 Total 30\nTotal 41\n")
    assert blkio.rwstat(text, bad) == {b"8:0": [10, 20, None], b"8:16": [5, 6, None],
                                       b"8:32": [0, blkio.BAD, None], b"8:48": [blkio.BAD, 0, None]}
    assert bad == ["unknown operation 'Flush'", "malformed 8:32 Write counter: not a number: b'x12'",
                   "malformed 8:48 Read counter: empty", b"rubbish"]


@pytest.mark.parametrize("token", [b"max", b"-1", str(2 ** 70).encode(), "١٢٣".encode(), b"1_000", b"+5"])
def test_rwstat_a_bad_counter_wins_over_a_good_one_of_the_same_device(token):
    """Two lines for one counter, one of them bad: the counter is unknown, whatever the order."""
    for text in (b"8:0 Read 10\n8:0 Read " + token + b"\n8:0 Write 2\n",
                 b"8:0 Read " + token + b"\n8:0 Read 10\n8:0 Write 2\n"):
        bad = []
        assert blkio.rwstat(text, bad) == {b"8:0": [blkio.BAD, 2, None]}
        assert len(bad) == 1 and bad[0].startswith("malformed 8:0 Read counter: ")


def test_a_bad_counter_costs_that_device_and_the_total_only():
    r = blkio.Blkio()
    bad = []
    out = r.parse_v2({"io.stat": b"8:0 rbytes=max wbytes=2 rios=1 wios=1\n8:16 rbytes=5 wbytes=6 rios=7 wios=8\n"},
                     bad)
    assert out == [("disk_octets", "8_16", (5, 6)),
                   ("disk_ops", "8_0", (1, 1)), ("disk_ops", "8_16", (7, 8)), ("disk_ops", "total", (8, 9))]
    assert bad == ["malformed io.stat counter rbytes of 8:0: not a number: b'max'",
                   "disk_octets-total left out: a device's counters are not numbers"]


def test_a_total_beyond_int64_is_left_out():
    big = str(2 ** 62).encode()
    bad = []
    out = blkio.Blkio().parse_v2({"io.stat": b"8:0 rbytes=%s wbytes=1\n8:16 rbytes=%s wbytes=1\n" % (big, big)},
                                 bad)
    assert ("disk_octets", "8_0", (2 ** 62, 1)) in out and ("disk_octets", "8_16", (2 ** 62, 1)) in out
    assert not any(ti == "total" and t == "disk_octets" for t, ti, _ in out)
    assert ("disk_ops", "total", (0, 0)) in out
    assert bad == ["disk_octets-total left out: the sum over the devices is beyond the int64 range"]


def test_max_devices_reports_the_first_by_majmin_and_totals_all():
    lines = b"".join(b"%d:%d rbytes=%d wbytes=1 rios=1 wios=1\n" % (maj, mn, maj * 100 + mn)
                     for maj, mn in [(259, 0), (8, 16), (8, 0), (253, 1), (7, 3), (8, 2)])
    named = []
    r = blkio.Blkio(lambda majmin: named.append(majmin) or majmin.replace(":", "_"), max_devices=4)
    bad = []
    out = r.parse_v2({"io.stat": lines}, bad)
    assert [ti for t, ti, _ in out if t == "disk_octets"] == ["7_3", "8_0", "8_2", "8_16", "total"]
    assert named == ["7:3", "8:0", "8:2", "8:16"]               # no name looked up for the others
    totals = dict(((t, ti), v) for t, ti, v in out if ti == "total")
    assert totals == {("disk_octets", "total"): (sum((259 * 100, 816, 800, 25301, 703, 802)), 6),
                      ("disk_ops", "total"): (6, 6)}
    assert bad == ["MaxDevices 4: 6 block devices, the first 4 by MAJ:MIN reported"]
    assert isinstance(bad[0], blkio.Limit)
    again = []
    r.parse_v2({"io.stat": lines}, again)
    assert again == bad                                         # the same text every pass
    # at the limit: no note
    bad = []
    blkio.Blkio(max_devices=6).parse_v2({"io.stat": lines}, bad)
    assert bad == []


def test_io_stat_keys_of_future_kernels_and_devices_without_counters():
    bad = []
    text = (b"259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=30 dios=3 cost.vrate=100.00 cost.usage=5 rfuture=9\n"
            b"8:0 \n"
            b"253:0 rbytes=1 wbytes=2 rios=3 wios=4\n")
    parsed = blkio.io_stat(text, bad)
    assert bad == []
    assert parsed["bytes"] == {b"259:0": [10, 20, 30], b"8:0": [0, 0, None], b"253:0": [1, 2, None]}
    assert parsed["ops"] == {b"259:0": [1, 2, 3], b"8:0": [0, 0, None], b"253:0": [3, 4, None]}


def test_io_stat_malformed_value_reported_rest_kept():
    bad = []
    parsed = blkio.io_stat(b"8:0 rbytes=1x wbytes=2 rios=1 wios=1\nnot-a-device rbytes=1\n", bad)
    assert parsed["bytes"] == {b"8:0": [blkio.BAD, 2, None]}
    assert parsed["ops"] == {b"8:0": [1, 1, None]}
    assert bad == ["malformed io.stat counter rbytes of 8:0: not a number: b'1x'", b"not-a-device rbytes=1"]


def test_sectors_format():
    bad = []
    assert blkio.per_device(b"8:0 2048\n8:16 0\nTotal 2048\n8:32 x\nnot-a-device 1\n", bad) == {
        b"8:0": 2048, b"8:16": 0, b"8:32": blkio.BAD}
    assert bad == ["malformed 8:32 sectors: not a number: b'x'", b"not-a-device 1"]


# -- the reader: generations, alternatives, first generation wins, names -------------------------


NAMES = {"8:0": "sda", "254:0": "vda", "7:300": "loop300", "259:0": "nvme0n1"}


def reader():
    return Blkio(lambda majmin: NAMES.get(majmin, devices.fallback(majmin)))


def test_select_v1_keeps_the_generations_that_count_something_first():
    r, notes = reader(), []
    bfq, cfq, thr = "blkio.bfq.io_service_bytes", "blkio.io_service_bytes", "blkio.throttle.io_service_bytes"
    files = lambda *gens: tuple(f for g in blkio.GENERATIONS if g.name in gens for f in g.files())
    # this machine as shipped: BFQ files everywhere, nothing counted
    assert r.select_v1({bfq: b"Total 0\n", thr: b"Total 0\n"}, notes) == ()
    assert len(notes) == 1 and "no disk is accounted" in notes[0]
    # blk-throttle active on vda
    assert r.select_v1({bfq: b"Total 0\n", thr: rwstat_text({"254:0": (0, 0, 0)})}, []) == files("throttle")
    # and a BFQ loop device: both
    assert r.select_v1({bfq: rwstat_text({"7:300": (0, 0, 0)}), thr: rwstat_text({"254:0": (0, 0, 0)})},
                       []) == files("bfq", "throttle")
    # 4.x, every disk CFQ: throttle lists the same disks, nothing new: CFQ only
    assert r.select_v1({cfq: rwstat_text({"8:0": (1, 1, 0)}, discard=False),
                        thr: rwstat_text({"8:0": (1, 1, 0)}, discard=False)}, []) == files("cfq")
    # nothing to go by (no top directory files): every generation
    assert r.select_v1({}, []) == r.files_v1
    # each generation's kinds are (recursive, plain) alternatives
    assert files("throttle") == (("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_service_bytes"),
                                 ("blkio.throttle.io_serviced_recursive", "blkio.throttle.io_serviced"))


def test_a_device_is_taken_from_the_first_generation_listing_it():
    data = {"blkio.bfq.io_service_bytes_recursive": rwstat_text({"7:300": (4, 8, 0)}),
            "blkio.bfq.io_serviced_recursive": rwstat_text({"7:300": (1, 2, 0)}),
            # throttle also active on the loop device: it counts the same I/O (in bios)
            "blkio.throttle.io_service_bytes_recursive": rwstat_text({"254:0": (10, 20, 0), "7:300": (4, 8, 0)}),
            "blkio.throttle.io_serviced_recursive": rwstat_text({"254:0": (3, 4, 0), "7:300": (9, 9, 0)})}
    s = samples(reader().parse_v1(data, []))
    assert s[("disk_octets", "loop300")] == (4, 8)
    assert s[("disk_ops", "loop300")] == (1, 2)                   # BFQ's, not throttle's 9/9
    assert s[("disk_octets", "vda")] == (10, 20)
    assert s[("disk_octets", "total")] == (14, 28)                # loop300 counted once
    assert s[("disk_ops", "total")] == (4, 6)


def test_recursive_preferred_plain_used_when_alone():
    plain = {"blkio.throttle.io_service_bytes": rwstat_text({"8:0": (1, 1, 0)})}
    both = dict(plain, **{"blkio.throttle.io_service_bytes_recursive": rwstat_text({"8:0": (5, 5, 0)})})
    assert samples(reader().parse_v1(both, []))[("disk_octets", "sda")] == (5, 5)
    assert samples(reader().parse_v1(plain, []))[("disk_octets", "sda")] == (1, 1)


def test_samples_types_and_values_shapes():
    data = {"blkio.io_service_bytes_recursive": rwstat_text({"8:0": (512, 1024, 0)}, discard=False),
            "blkio.io_serviced_recursive": rwstat_text({"8:0": (1, 2, 0)}, discard=False),
            "blkio.io_queued_recursive": rwstat_text({"8:0": (2, 3, 0)}, discard=False),
            "blkio.sectors_recursive": b"8:0 3\n",
            "blkio.io_service_time_recursive": rwstat_text({"8:0": (2500000, 7999999, 0)}, discard=False),
            "blkio.io_wait_time_recursive": rwstat_text({"8:0": (10 ** 9, 0, 0)}, discard=False)}
    out = reader().parse_v1(data, [])
    assert samples(out) == {
        ("disk_octets", "sda"): (512, 1024), ("disk_octets", "total"): (512, 1024),
        ("disk_ops", "sda"): (1, 2), ("disk_ops", "total"): (1, 2),
        ("queue_length", "sda"): (5,), ("derive", "disk_sectors-sda"): (3,),
        ("disk_time", "service-sda"): (2, 7), ("disk_time", "wait-sda"): (1000, 0)}
    for type_, _, values in out:
        assert len(values) == len(identifiers.data_sources(type_))


def test_cfq_extras_without_the_bytes_file():
    data = {"blkio.io_serviced": rwstat_text({"8:0": (1, 2, 0)}, discard=False),
            "blkio.io_queued": rwstat_text({"8:0": (4, 0, 0)}, discard=False)}
    assert samples(reader().parse_v1(data, [])) == {
        ("disk_ops", "sda"): (1, 2), ("disk_ops", "total"): (1, 2), ("queue_length", "sda"): (4,)}


def test_no_device_listed_no_samples():
    data = {"blkio.throttle.io_service_bytes_recursive": b"Total 0\n",
            "blkio.throttle.io_serviced_recursive": b"Total 0\n"}
    assert reader().parse_v1(data, []) == []
    assert reader().parse_v2({"io.stat": b""}, []) == []


def test_a_device_called_total_or_two_devices_alike_fall_back_to_maj_min():
    names = {"8:0": "total", "8:16": "disk", "8:32": "disk"}
    r = Blkio(lambda majmin: names[majmin])
    s = samples(r.parse_v2({"io.stat": b"8:0 rbytes=1 wbytes=1 rios=1 wios=1\n8:16 rbytes=2 wbytes=2 rios=1 wios=1\n"
                                       b"8:32 rbytes=3 wbytes=3 rios=1 wios=1\n"}, []))
    assert {ti for t, ti in s if t == "disk_octets"} == {"8_0", "disk", "8_32", "total"}
    assert s[("disk_octets", "total")] == (6, 6)


# -- device names ------------------------------------------------------------------------------


class Clock(object):
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_device(root, majmin, devname, dm_name=None):
    d = os.path.join(str(root), "sys/dev/block", majmin)
    os.makedirs(os.path.join(d, "dm"), exist_ok=True)
    major, minor = majmin.split(":")
    with open(os.path.join(d, "uevent"), "w") as f:
        f.write("MAJOR=%s\nMINOR=%s\nDEVNAME=%s\nDEVTYPE=disk\n" % (major, minor, devname))
    if dm_name is not None:
        with open(os.path.join(d, "dm/name"), "w") as f:
            f.write(dm_name + "\n")
    return d


def test_device_names_from_sysfs_dm_and_fallback(tmp_path):
    make_device(tmp_path, "254:0", "vda")
    make_device(tmp_path, "259:1", "nvme0n1p1")
    make_device(tmp_path, "253:3", "dm-3", "vg0-my lv")
    make_device(tmp_path, "104:0", "cciss/c0d0")
    names = devices.DeviceNames(str(tmp_path))
    assert names("254:0") == "vda"
    assert names("259:1") == "nvme0n1p1"
    assert names("253:3") == "vg0-my_lv"            # dm/name, made safe
    assert names("104:0") == "cciss_c0d0"           # no '/' in an identifier
    assert names("8:0") == "8_0"                    # not in sysfs
    assert names("../../etc") == ".._.._etc" and names.lookups == 5   # never looked up as a path


def test_device_names_are_cached_and_new_devices_picked_up(tmp_path):
    clock = Clock()
    names = devices.DeviceNames(str(tmp_path), clock=clock, ttl=300, retry=30)
    make_device(tmp_path, "254:0", "vda")
    assert names("254:0") == "vda"
    for _ in range(100):
        names("254:0")
    assert names.lookups == 1
    # a device seen for the first time is looked up at once
    make_device(tmp_path, "7:5", "loop5")
    assert names("7:5") == "loop5" and names.lookups == 2
    # a device sysfs does not know yet: MAJ_MIN, asked again only after `retry`
    assert names("7:6") == "7_6"
    make_device(tmp_path, "7:6", "loop6")
    clock.now += 29
    assert names("7:6") == "7_6" and names.lookups == 3
    clock.now += 2
    assert names("7:6") == "loop6" and names.lookups == 4


def test_a_vanished_device_falls_back_after_its_ttl(tmp_path):
    clock = Clock()
    names = devices.DeviceNames(str(tmp_path), clock=clock, ttl=300, retry=30)
    d = make_device(tmp_path, "253:0", "dm-0", "vg0-data")
    assert names("253:0") == "vg0-data"
    shutil.rmtree(d)
    clock.now += 299
    assert names("253:0") == "vg0-data"             # cached
    clock.now += 2
    assert names("253:0") == "253_0"                # gone: no exception, the fallback


def test_device_name_cache_is_bounded(tmp_path):
    names = devices.DeviceNames(str(tmp_path), capacity=10)
    for n in range(25):
        assert names("7:%d" % n) == "7_%d" % n
    assert len(names._cache) <= 10


# -- the fixture trees: what each README promises ----------------------------------------------


@pytest.fixture(scope="module")
def passes():
    return {t: fu.values(fu.cli_json(fu.tree(t))[0]) for t in fu.TREES}


def test_bfq_tree_against_what_the_processes_did(passes):
    cap = json.load(open(os.path.join(fu.tree("blkio-v1-bfq"), "CAPTURE.json")))
    store = passes["blkio-v1-bfq"]["docker-store"]
    did = {(op, where): n for op, where, n in cap["containers"]["store"]["did"]}
    # the loop device (BFQ): exactly what went through it
    assert store[("disk_octets", "loop300")] == (did[("read", "loop")], did[("write", "loop")])
    # vda (blk-throttle): at least what the process wrote, plus a little ext4 metadata at fsync
    read, write = store[("disk_octets", "vda")]
    assert read == did[("read", "file")]
    assert did[("write", "file")] <= write <= did[("write", "file")] + 64 * 1024
    # ... and the kernel's per-process view agrees on the whole
    io = cap["containers"]["store"]["proc_io"]
    assert store[("disk_octets", "total")] == (int(io["read_bytes"]), store[("disk_octets", "total")][1])
    assert abs(store[("disk_octets", "total")][1] - int(io["write_bytes"])) <= 64 * 1024
    # the box's process sat in a sub-cgroup: the _recursive files saw it, the plain ones list zeros
    box = passes["blkio-v1-bfq"]["lxc-box"]
    assert box[("disk_octets", "loop300")] == (0, 2 * MiB)
    plain = fu.rwstat(fu.tree("blkio-v1-bfq"), "sys/fs/cgroup/blkio" + cap["containers"]["box"]["cgroup"]
                      + "/blkio.bfq.io_service_bytes")
    assert plain["7:300"]["Write"] == 0
    # the idle container listed no device anywhere: not reported at all in a blkio-only tree
    assert set(passes["blkio-v1-bfq"]) == {"docker-store", "lxc-box"}


def test_cfq_tree_takes_cfq_devices_from_cfq_and_the_others_from_throttle(passes):
    db = passes["blkio-v1-cfq"]["docker-db"]
    assert db[("disk_ops", "sda")] == (412, 803)            # CFQ's requests, not throttle's 1536/3072 bios
    assert db[("disk_octets", "sdb")] == (10 * MiB, 20 * MiB)
    assert db[("disk_octets", "vg0-root")] == (48 * MiB, 96 * MiB)
    assert db[("queue_length", "sda")] == 3
    assert db[("derive", "disk_sectors-sda")] == 144 * MiB // 512
    assert db[("disk_time", "service-sda")] == (2915, 8123)
    assert not any(t in ("total_bytes", "total_operations") for t, _ in db)   # 4.9 has no Discard lines
    web = passes["blkio-v1-cfq"]["lxc-web"]
    assert web[("disk_octets", "sda")] == (200 * MiB, 30 * MiB)  # _recursive: the sub-cgroups' I/O
    assert web[("disk_octets", "vg0-root")] == (1 * MiB, 0)     # 4.9's throttle files have no _recursive


def test_throttle_tree_names_discards_and_a_vanished_device(passes):
    web = passes["blkio-v1-throttle"]["docker-web"]
    assert web[("disk_octets", "nvme0n1")] == (150 * MiB, 500 * MiB)
    assert web[("total_bytes", "discard-nvme0n1")] == 32 * MiB
    assert web[("total_operations", "discard-nvme0n1")] == 64
    assert web[("disk_octets", "loop3")] == (4 * MiB, 0)
    assert web[("disk_octets", "8_0")] == (733741056, 0)        # no sys/dev/block/8:0 in the tree
    ci = passes["blkio-v1-throttle"]["docker-ci"]
    assert ci[("disk_octets", "nvme0n1")] == (1024 * MiB, 3072 * MiB)


def test_v2_tree_dm_and_nvme_names(passes):
    pg = passes["blkio-v2-iostat"]["docker-pg"]
    assert pg[("disk_octets", "vgdata-pg")] == (8053063680, 15032385536)
    assert pg[("disk_octets", "nvme0n1")] == (8053063680, 15032385536)
    assert pg[("total_bytes", "discard-nvme0n1")] == 1024 * MiB
    assert pg[("disk_octets", "sda")] == (0, 0) and ("total_bytes", "discard-sda") not in pg
    assert pg[("disk_ops", "vgdata-root")] == (5, 0)
    cache = passes["blkio-v2-iostat"]["podman-cache"]
    assert cache[("disk_octets", "total")] == (2 * 1310720, 2 * 52428800)   # dm over nvme: once per level
    assert set(passes["blkio-v2-iostat"]) == {"docker-pg", "podman-cache"}


def test_older_trees_blkio_files(passes):
    # v2-pure: io.stat of two containers; the tree has no sysfs, so MAJ_MIN names
    api = passes["v2-pure"]["docker-api"]
    assert api[("disk_octets", "254_0")] == (15814656, 4096000)
    assert api[("disk_ops", "total")] == (412, 97)
    assert not any(t.startswith("disk") for t, _ in passes["v2-pure"]["nspawn-my-box"])
    # v1-systemd-driver: only blkio.throttle.io_service_bytes was written for that tree
    reg = passes["v1-systemd-driver"]["docker-registry"]
    assert reg[("disk_octets", "253_0")] == (1048576, 73400320)
    assert not any(t == "disk_ops" for t, _ in reg)
    # hybrid-debian12 was captured before any disk was accounted: "Total 0" only, no identifier
    for v in passes["hybrid-debian12"].values():
        assert not any(t.startswith("disk") for t, _ in v)


def test_table_has_block_columns():
    rc, out, _ = fu.run_cli(["--root", fu.tree("blkio-v1-throttle")])
    assert rc == 0
    header, *rows = out.splitlines()
    cols = header.split()
    assert "READ" in cols and "WRITE" in cols and "BLK" in cols
    row = [r for r in rows if r.startswith("docker-ci ")][0]
    assert "1.0 GiB" in row and "3.0 GiB" in row


# -- what a pass reads ---------------------------------------------------------------------------


class ReadLog(object):
    """Counts fs.read_cgroup_file calls (and misses) by directory."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = fs.read_cgroup_file

        def spy(directory, name, kept=None, head=None):
            result = real(directory, name, kept, head)
            self.calls.append((directory, name, result is not None))
            return result
        monkeypatch.setattr(fs, "read_cgroup_file", spy)

    def take(self):
        out, self.calls = self.calls, []
        return out


def blkio_reads(calls, directory):
    return [(name, ok) for d, name, ok in calls if d == directory and name.startswith("blkio.")]


def test_bfq_tree_costs_one_file_per_kind_and_generation_and_no_failed_open_after_the_first_pass(
        monkeypatch, tmp_path):
    root = fu.copy_tree("blkio-v1-bfq", tmp_path)
    log = ReadLog(monkeypatch)
    collector, warnings, _ = fu.collect(root)
    found = collector.discover()
    top = root + "/sys/fs/cgroup/blkio"
    for n in range(3):
        collector.collect(found)
        calls = log.take()
        # the top directory: one plain bytes file per generation present (CFQ's absent, remembered)
        assert sorted(blkio_reads(calls, top)) == sorted(
            [("blkio.bfq.io_service_bytes", True), ("blkio.throttle.io_service_bytes", True)]
            + ([("blkio.io_service_bytes", False)] if n == 0 else []))
        for c in found:
            reads = blkio_reads(calls, c.dirs[top])
            # BFQ and throttle both count something here: bytes + ops of each, the _recursive ones
            assert sorted(reads) == [("blkio.bfq.io_service_bytes_recursive", True),
                                     ("blkio.bfq.io_serviced_recursive", True),
                                     ("blkio.throttle.io_service_bytes_recursive", True),
                                     ("blkio.throttle.io_serviced_recursive", True)]
    assert warnings == []


def test_one_generation_counting_costs_two_files(monkeypatch, tmp_path):
    root = fu.copy_tree("blkio-v1-bfq", tmp_path)
    top = root + "/sys/fs/cgroup/blkio"
    with open(top + "/blkio.bfq.io_service_bytes", "w") as f:    # no BFQ disk any more
        f.write("Total 0\n")
    log = ReadLog(monkeypatch)
    collector, _, _ = fu.collect(root)
    found = collector.discover()
    collector.collect(found)
    log.take()
    results = collector.collect(found)
    calls = log.take()
    for c in found:
        assert sorted(blkio_reads(calls, c.dirs[top])) == [("blkio.throttle.io_service_bytes_recursive", True),
                                                            ("blkio.throttle.io_serviced_recursive", True)]
    store = {r.instance: samples(r.samples) for r in results}["docker-store"]
    assert ("disk_octets", "loop300") not in store and store[("disk_octets", "vda")][0] == 4 * MiB


def test_kernel_without_recursive_files_costs_one_failed_open_per_refresh(monkeypatch, tmp_path):
    root = fu.copy_tree("blkio-v1-cfq", tmp_path)
    log = ReadLog(monkeypatch)
    collector, _, _ = fu.collect(root)
    found = collector.discover()
    top = root + "/sys/fs/cgroup/blkio"
    collector.collect(found)
    first = log.take()
    collector.collect(found)
    second = log.take()
    db = [c for c in found if c.name == "db"][0].dirs[top]
    assert ("blkio.throttle.io_service_bytes_recursive", False) in blkio_reads(first, db)
    assert all(ok for _, ok in blkio_reads(second, db))
    assert sorted(n for n, _ in blkio_reads(second, db)) == sorted([
        "blkio.io_service_bytes_recursive", "blkio.io_serviced_recursive", "blkio.io_queued_recursive",
        "blkio.sectors_recursive", "blkio.io_service_time_recursive", "blkio.io_wait_time_recursive",
        "blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"])


def test_without_top_directory_files_every_generation_is_read(monkeypatch, tmp_path):
    root = fu.copy_tree("blkio-v1-bfq", tmp_path)
    top = root + "/sys/fs/cgroup/blkio"
    for name in os.listdir(top):
        if name.startswith("blkio."):
            os.unlink(os.path.join(top, name))
    entries, err = fu.cli_json(root)
    assert fu.values(entries) == fu.values(fu.cli_json(fu.tree("blkio-v1-bfq"))[0])


def test_nothing_accounted_no_figures_and_one_note(tmp_path):
    root = fu.copy_tree("blkio-v1-bfq", tmp_path)
    top = root + "/sys/fs/cgroup/blkio"
    for name in ("blkio.bfq.io_service_bytes", "blkio.throttle.io_service_bytes"):
        with open(os.path.join(top, name), "w") as f:
            f.write("Total 0\n")
    collector, warnings, infos = fu.collect(root)
    for _ in range(3):
        assert collector.collect() == []       # blkio is all these containers have
    assert warnings == []
    assert len([m for m in infos if "no disk is accounted" in m]) == 1


# -- changes between passes, bad input ----------------------------------------------------------


def container_blkio(root, tree, instance):
    from tests.unit import test_fixture_trees as tft
    return os.path.join(root, tft.dirs(tree, tft.EXPECTED[tree][instance][2])["blkio"])


def pass_values(collector):
    return {r.instance: samples(r.samples) for r in collector.collect()}


def test_a_device_appearing_between_passes_is_named(tmp_path):
    tree = "blkio-v1-throttle"
    root = fu.copy_tree(tree, tmp_path)
    collector, warnings, _ = fu.collect(root)
    before = pass_values(collector)
    d = container_blkio(root, tree, "docker-ci")
    extra = {"259:0": (1024 * MiB, 3072 * MiB, 0), "259:1": (MiB, 2 * MiB, 0)}
    with open(d + "/blkio.throttle.io_service_bytes_recursive", "wb") as f:
        f.write(rwstat_text(extra))
    with open(root + "/sys/fs/cgroup/blkio/blkio.throttle.io_service_bytes", "ab") as f:
        f.write(b"259:1 Read 0\n")
    make_device(root, "259:1", "nvme1n1")
    after = pass_values(collector)["docker-ci"]
    assert ("disk_octets", "nvme1n1") not in before["docker-ci"]
    assert after[("disk_octets", "nvme1n1")] == (MiB, 2 * MiB)
    assert after[("disk_octets", "total")] == (1025 * MiB, 3074 * MiB)
    assert warnings == []


def test_a_device_vanishing_and_a_counter_reset_do_not_break_the_pass(tmp_path):
    tree = "blkio-v1-throttle"
    root = fu.copy_tree(tree, tmp_path)
    collector, warnings, _ = fu.collect(root)
    before = pass_values(collector)
    d = container_blkio(root, tree, "docker-web")
    # the USB disk's lines are gone (the kernel dropped its groups), nvme0n1's counters restarted
    with open(d + "/blkio.throttle.io_service_bytes_recursive", "wb") as f:
        f.write(rwstat_text({"259:0": (4096, 0, 0), "7:3": (4 * MiB, 0, 0)}))
    after = pass_values(collector)
    web = after["docker-web"]
    assert ("disk_octets", "8_0") not in web
    assert web[("disk_octets", "nvme0n1")] == (4096, 0)        # smaller than before: a DERIVE gap, no error
    assert before["docker-web"][("disk_octets", "nvme0n1")][0] > 4096
    assert identifiers.data_sources("disk_octets") == (("read", "derive"), ("write", "derive"))
    assert after["docker-ci"] == before["docker-ci"]
    assert warnings == []


@pytest.mark.parametrize("tree, instance, name", [
    ("blkio-v1-throttle", "docker-web", "blkio.throttle.io_service_bytes_recursive"),
    ("blkio-v1-cfq", "docker-db", "blkio.io_service_bytes_recursive"),
    ("blkio-v1-bfq", "docker-store", "blkio.bfq.io_service_bytes_recursive"),
])
def test_unknown_operation_and_garbage_lines(tmp_path, passes, tree, instance, name):
    root = fu.copy_tree(tree, tmp_path)
    path = os.path.join(container_blkio(root, tree, instance), name)
    with open(path) as f:
        lines = f.read().splitlines()
    lines.insert(1, lines[0].split(" ")[0] + " Flush 123456")     # an operation of some future kernel
    lines.insert(3, "garbage here")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    entries, err = fu.cli_json(root)
    assert fu.values(entries) == passes[tree]                     # every figure as before
    assert "unknown operation 'Flush'" in err
    assert "garbage here" in err
    # A device's line without its value: that device's bytes are unknown, and so is the sum over the
    # devices; every other figure is as before.
    with open(path, "w") as f:
        f.write("\n".join(lines + ["7:99 Read"]) + "\n")
    entries, err = fu.cli_json(root)
    got = fu.values(entries)
    expected = dict(passes[tree])
    expected[instance] = dict((k, v) for k, v in passes[tree][instance].items() if k != ("disk_octets", "total"))
    assert ("disk_octets", "total") in passes[tree][instance]
    assert got == expected
    assert "7:99 Read counter: empty" in err and "disk_octets-total left out" in err


def test_malformed_io_stat_line(tmp_path, passes):
    tree = "blkio-v2-iostat"
    root = fu.copy_tree(tree, tmp_path)
    path = os.path.join(container_blkio(root, tree, "podman-cache"), "io.stat")
    with open(path, "a") as f:
        f.write("8:16 rbytes=12O wbytes=1 rios=1 wios=1 dbytes=0 dios=0\n")
    entries, err = fu.cli_json(root)
    cache = fu.values(entries)["podman-cache"]
    pristine = passes[tree]["podman-cache"]
    # rbytes unknown: 8:16's bytes are (not its operations), and so is the sum of the bytes over the devices
    assert ("disk_octets", "8_16") not in cache and ("disk_octets", "total") not in cache
    assert cache[("disk_ops", "8_16")] == (1, 1)
    assert cache[("disk_ops", "total")] == tuple(x + 1 for x in pristine[("disk_ops", "total")])
    assert all(cache[k] == v for k, v in pristine.items() if k[1] != "total")
    assert "malformed io.stat counter rbytes of 8:16" in err and "12O" in err
    assert fu.values(entries)["docker-pg"] == passes[tree]["docker-pg"]


def test_an_unreadable_file_is_not_replaced_by_its_alternative(tmp_path, passes):
    tree = "blkio-v1-bfq"
    root = fu.copy_tree(tree, tmp_path)
    d = container_blkio(root, tree, "docker-store")
    os.unlink(d + "/blkio.bfq.io_service_bytes_recursive")
    os.mkdir(d + "/blkio.bfq.io_service_bytes_recursive")         # EISDIR when read
    entries, err = fu.cli_json(root)
    store = fu.values(entries)["docker-store"]
    pristine = passes[tree]["docker-store"]
    # BFQ's bytes are missing (the plain file was not read instead); its ops, and vda, still count
    assert ("disk_octets", "loop300") not in store
    assert store[("disk_ops", "loop300")] == pristine[("disk_ops", "loop300")]
    assert store[("disk_octets", "vda")] == pristine[("disk_octets", "vda")]
    assert "cannot read" in err and "blkio.bfq.io_service_bytes_recursive" in err
