"""README.rst's identifier table is the public contract: every identifier the
plugin emits, on every fixture layout and on this machine's real kernel, must
be listed there, with its type's data-source type."""

import os
import re

from tests.support import CHECKOUT
from tests.support import fixtureutil as fu

README = open(os.path.join(CHECKOUT, "README.rst")).read()


def _identifier_table():
    """{type-type_instance pattern: DS type} from the README's "Identifiers and units" table."""
    section = README.split("Identifiers and units", 1)[1].split("The command line", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"^(``\S.*?)\s{2,}(DERIVE|GAUGE)\s", line)
        if m:
            for name in re.findall(r"``([^`]+)``", m.group(1)):
                if "-" in name:  # identifiers, not notes like ``PerCPU``
                    rows[name] = m.group(2).lower()
    return rows, section


TABLE, SECTION = _identifier_table()


def _documented(type_, type_instance, section=SECTION):
    """The README row covering this identifier, or None."""
    ident = "%s-%s" % (type_, type_instance)
    if ident in TABLE:
        return ident
    families = [
        ("cpu-cpu<N>", re.match(r"^cpu-cpu\d+$", ident)),
        ("memory-<field>", type_ == "memory" and re.search(r"\b%s\b" % re.escape(type_instance), section)),
        ("vmpage_action-<field>", type_ == "vmpage_action" and re.match(
            r"^(pg|p?swp|workingset_|thp_|zswp|numa_|hugetlb_)", type_instance)),
        ("derive-memory_<key>", type_ == "derive" and type_instance.startswith("memory_")
         and "``%s``" % type_instance[len("memory_"):] in section),
        ("total_time_in_ms-pressure_<res>_<kind>", re.match(
            r"^total_time_in_ms-pressure_(cpu|memory|io)_(some|full)$", ident)),
        # block I/O, one identifier per device (<device>: the kernel's name or MAJ_MIN)
        ("disk_octets-<device>", type_ == "disk_octets"),
        ("disk_ops-<device>", type_ == "disk_ops"),
        ("total_bytes-discard-<device>", type_ == "total_bytes" and type_instance.startswith("discard-")),
        ("total_operations-discard-<device>", type_ == "total_operations" and type_instance.startswith("discard-")),
        ("queue_length-<device>", type_ == "queue_length"),
        ("derive-disk_sectors-<device>", type_ == "derive" and type_instance.startswith("disk_sectors-")),
        ("disk_time-service-<device>", type_ == "disk_time" and type_instance.startswith("service-")),
        ("disk_time-wait-<device>", type_ == "disk_time" and type_instance.startswith("wait-")),
        # network, one identifier per interface
        ("if_octets-<interface>", type_ == "if_octets"),
        ("if_packets-<interface>", type_ == "if_packets"),
        ("if_errors-<interface>", type_ == "if_errors"),
        ("if_dropped-<interface>", type_ == "if_dropped"),
    ]
    for row, ok in families:
        if ok and row in TABLE:
            return row
    return None


def _emitted():
    seen = {}
    for tree in fu.TREES:
        entries, _ = fu.cli_json(fu.tree(tree), "--per-cpu")
        for e in entries:
            seen[(e["type"], e["type_instance"])] = e["dstypes"][0]
    return seen


def test_readme_table_parsed():
    assert len(TABLE) >= 20, TABLE


def test_every_emitted_identifier_is_documented_with_its_ds_type():
    emitted = _emitted()
    assert len(emitted) > 60
    missing, wrong = [], []
    for (type_, type_instance), dstype in sorted(emitted.items()):
        row = _documented(type_, type_instance)
        if row is None:
            missing.append("%s-%s" % (type_, type_instance))
        elif TABLE[row] != dstype:
            wrong.append("%s-%s: README %s, emitted %s" % (type_, type_instance, TABLE[row], dstype))
    assert not missing, "identifiers missing from README.rst: %s" % missing
    assert not wrong, wrong


def test_every_documented_row_is_emitted_somewhere():
    """No stale rows: each README row is produced by at least one fixture layout."""
    emitted = _emitted()
    rows = set(_documented(t, ti) for t, ti in emitted)
    assert set(TABLE) - rows == LIVE_ONLY


# Rows no captured tree can produce (a namespace is entered through a live process):
# tests/kernel/test_network_integration.py checks them on a live pass.
LIVE_ONLY = {"if_octets-<interface>", "if_packets-<interface>", "if_errors-<interface>", "if_dropped-<interface>"}
