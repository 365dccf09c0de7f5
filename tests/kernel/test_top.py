"""``collectd-cgroups top`` against synthetic containers with a known load, on the real kernel.

The full-screen view runs in a real terminal: a tmux server of each test's own (``tmux -L <socket>``),
driven with ``send-keys`` and read with ``capture-pane``; the plain output (``--once``, ``-n``) is read as
text.  Containers are synthetic cgroups of this module's prefix (``ccg_lab.synthetic``) or NetLab boxes
(network namespaces and veths of the test's own, 192.0.2.0/24); top sees only them (``--match`` their
prefix, ``--ignore`` every other path, ``--runtimes nspawn``: no systemd here, so no built-in layout finds
other tests' Docker or LXC containers).  Independent sources: ``/proc/<pid>/stat`` for CPU time,
``/proc/<pid>/net/dev`` for bytes sent, ``/proc/<pid>/io`` for bytes written, ``stty -a`` for the terminal's state after top.

Every wait is a poll with a timeout; each tmux server, process, cgroup and namespace is removed in
teardown.
"""

import collections
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import pytest

from ccg_lab.synthetic import activate_blk_throttle, whole_disk
from tests.support import CHECKOUT
from tests.support.kernelutil import MiB, proc_cpu_seconds, proc_stat, tree_fixtures
from tests.support.netnsutil import proc_net_dev, wait_for

PREFIX, module_tree, tree = tree_fixtures("top")
EXIT_MARK = "TOP-EXIT="
UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


def top_argv(prefix, *extra):
    """top over the children of ``/<prefix>`` only."""
    top_level = prefix.split("/")[0]
    return [sys.executable, "-m", "collectd_cgroups", "top",
            "--match", "^/%s/(?P<name>[^/]+)$" % re.escape(prefix),
            "--ignore", "^(?!/%s/)" % re.escape(top_level), "--runtimes", "nspawn"] + list(extra)


def parse_bytes(text):
    if text == "-":
        return None
    m = re.match(r"^([0-9.]+)(B|KiB|MiB|GiB|TiB)$", text)
    assert m, "not a byte figure: %r" % text
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_tables(lines):
    """Every table in ``lines``: a list of [{column title: cell, "mark": ...}], one list per title line.
    Cells are left-aligned under their titles: a cell spans from its title's column to the next one's."""
    tables = []
    rows = None
    for line in lines:
        if re.match(r"^\s+NAME\s", line) and "CPU%" in line:
            starts = [(m.start(), m.group()) for m in re.finditer(r"\S+", line)]
            rows = []
            tables.append(rows)
            continue
        if rows is None or not line.strip():
            rows = None
            continue
        if line.startswith(("c CPU", "/")):      # the footer of the full-screen view
            rows = None
            continue
        row = {"mark": line[:starts[0][0]].strip()}
        for i, (start, title) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else None
            row[title] = line[start:end].strip()
        rows.append(row)
    return tables


def named(table, short):
    return [r for r in table if r["NAME"] == "cgroup-" + short]


def start_time(pid):
    """Field 22 of /proc/<pid>/stat (None when gone): tells a process from a later one with its PID."""
    try:
        return proc_stat(pid)[19]
    except FileNotFoundError:
        return None


class Tmux(object):
    """A tmux server of our own running top in a shell that, once top exits, prints top's exit status
    and the terminal's settings, then sleeps (the pane stays readable)."""

    def __init__(self):
        self.socket = "ccgtop-" + secrets.token_hex(4)
        self.started = {}           # pid -> its start time: what close() may kill

    def start(self, argv, width=120, height=40):
        # the shell outlives a Ctrl-C sent to top (a trap with a command is not inherited, an ignore would be)
        script = "trap : INT; cd %s && %s; echo %s$?; stty -a; exec sleep 600" % (
            shlex.quote(CHECKOUT), " ".join(shlex.quote(a) for a in argv), EXIT_MARK)
        env = dict(os.environ, TERM="xterm")
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), "sh -c %s" % shlex.quote(script),
                  env=env)
        self.shell_pid = int(self.tmux("display-message", "-p", "#{pane_pid}").strip())
        self.started[self.shell_pid] = start_time(self.shell_pid)
        self.top_pid = wait_for(self._child, 10, "top to start")
        self.started[self.top_pid] = start_time(self.top_pid)

    def tmux(self, *args, **kw):
        res = subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null"] + list(args), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=30, **kw)
        assert res.returncode == 0, "tmux %s: %s" % (" ".join(args), res.stderr)
        return res.stdout

    def _child(self):
        try:
            with open("/proc/%d/task/%d/children" % (self.shell_pid, self.shell_pid)) as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return None
        return pids[0] if pids else None

    def lines(self):
        return self.tmux("capture-pane", "-p").rstrip("\n").split("\n")

    def screen(self, predicate, what, timeout=30):
        """The first capture of the pane for which ``predicate(lines)`` is true."""
        seen = []

        def check():
            lines = self.lines()
            seen[:] = lines
            assert "Traceback" not in "\n".join(lines), "\n".join(lines)
            return lines if predicate(lines) else None
        try:
            return wait_for(check, timeout, what, pause=0.1)
        except AssertionError as e:
            raise AssertionError("%s; the pane:\n%s" % (e, "\n".join(seen)))

    def table(self, predicate, what, timeout=30):
        """The table of the first capture whose table satisfies ``predicate(rows)``."""
        found = []

        def check(lines):
            tables = parse_tables(lines)
            if tables and predicate(tables[-1]):
                found[:] = [tables[-1]]
                return True
            return False
        self.screen(check, what, timeout)
        return found[0]

    def keys(self, *keys):
        self.tmux("send-keys", *keys)

    def resize(self, width, height):
        self.tmux("resize-window", "-x", str(width), "-y", str(height))

    def top_alive(self):
        try:
            with open("/proc/%d/stat" % self.top_pid) as f:
                return f.read().split(") ")[-1][0] != "Z"
        except OSError:
            return False

    def finished(self, timeout=20):
        """(exit status, stty -a output) once top has exited."""
        lines = self.screen(lambda ls: any(l.startswith(EXIT_MARK) for l in ls) and any("icanon" in l for l in ls),
                            "top to exit", timeout)
        text = "\n".join(lines)
        status = int(re.search(EXIT_MARK + r"(\d+)", text).group(1))
        return status, text[text.index(EXIT_MARK):]

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", "kill-server"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
        for pid, started in self.started.items():     # the server's end hangs them up; make sure
            if started is not None and start_time(pid) == started:      # still ours, not a reused PID
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:        # the server leaves its socket file behind
            os.unlink(os.path.join(os.environ.get("TMUX_TMPDIR", "/tmp"), "tmux-%d" % os.getuid(), self.socket))
        except FileNotFoundError:
            pass


@pytest.fixture
def terminals():
    made = []

    def start(argv, width=120, height=40):
        t = Tmux()
        made.append(t)          # before it starts: a failed start is cleaned up too
        t.start(argv, width, height)
        return t
    yield start
    for t in made:
        t.close()


def assert_restored(status, stty, expected_status):
    assert status == expected_status, stty
    settings = set(stty.split())
    # curses had turned these off: the terminal is back in cooked mode with echo
    assert {"icanon", "echo", "isig"} <= settings, stty
    assert not {"-icanon", "-echo", "-isig"} & settings, stty


def half_core_readings(term, short, count=3, timeout=60):
    """The CPU% of container ``short`` in distinct refreshes (told apart by the header's clock), until the
    median of the last ``count`` is 40-60: the burner gets its half core unless the machine is starved for
    a while (a CI run shares it), so the wait is for that, within ``timeout``."""
    readings = collections.OrderedDict()

    def collect(lines):
        tables = parse_tables(lines)
        rows = named(tables[-1], short) if tables else []
        if rows and rows[0]["CPU%"] not in ("", "-"):
            readings[lines[0]] = float(rows[0]["CPU%"])
        last = list(readings.values())[-count:]
        return len(last) == count and 40 <= statistics.median(last) <= 60
    try:
        term.screen(collect, "%d refreshes with the CPU of %s" % (count, short), timeout=timeout)
    except AssertionError:
        raise AssertionError("%s never showed half a core: %s" % (short, list(readings.values())))
    return list(readings.values())


# -- the full-screen view ---------------------------------------------------------------------------------

def test_screen_cpu_sort_filter_changes_resize_and_quit(tree, terminals):
    burn = tree.container("burn")
    burn.spawn(duty=0.5).wait_ready()
    fat = tree.container("fat")
    fat.spawn(memory_mib=96).wait_ready()
    alpha = tree.container("alpha")
    alpha.spawn().wait_ready()
    term = terminals(top_argv(tree.prefix, "--interval", "1"), 120, 40)

    # half a core, as docker stats would show it
    readings = half_core_readings(term, "burn")
    print("burn (duty 0.5): CPU%% shown %s" % readings)
    table = term.table(lambda t: len(t) == 3, "three rows")
    assert table[0]["NAME"] == "cgroup-burn"                    # sorted by CPU
    assert all(t in table[0] for t in ("RUNTIME", "CPU%", "THR%", "MEM/LIMIT", "MEM%", "WSET", "NETRX/s",
                                       "NETTX/s", "BLKR/s", "BLKW/s", "PIDS", "PSI%"))
    assert parse_bytes(named(table, "fat")[0]["MEM/LIMIT"].split("/")[0]) >= 96 * MiB
    lines = term.screen(lambda ls: "containers: 3" in ls[0], "the header")
    assert lines[1].startswith("CPU ") and any(l.startswith("c CPU*") for l in lines)

    order = lambda t: [r["NAME"][7:] for r in t]
    term.keys("m")
    term.table(lambda t: order(t)[:1] == ["fat"], "fat first by memory")
    term.screen(lambda ls: any(l.startswith("c CPU  m MEM*") for l in ls), "the footer marking MEM")
    term.keys("a")
    term.table(lambda t: order(t) == ["alpha", "burn", "fat"], "alphabetical")
    term.keys("r")
    term.table(lambda t: order(t) == ["fat", "burn", "alpha"], "reversed")
    term.keys("r", "c")
    term.table(lambda t: order(t)[:1] == ["burn"], "burn first by CPU again")
    for key, label in (("n", "n NET*"), ("i", "i I/O*")):
        term.keys(key)
        term.screen(lambda ls: any(label in l for l in ls), "the footer marking %s" % label)
    term.keys("c")

    # a filter by name, as less and top do it; Esc takes it away
    term.keys("/", "f", "a")
    term.screen(lambda ls: any(l.rstrip() == "/fa" for l in ls), "the filter prompt")
    term.keys("Enter")
    term.table(lambda t: order(t) == ["fat"], "only fat")
    term.screen(lambda ls: any("[fa]" in l for l in ls), "the filter in the footer")
    term.keys("Escape")
    term.table(lambda t: len(t) == 3, "all three again")

    # a container that appears, one that goes: marked for one refresh, no error
    late = tree.container("late")
    late.spawn().wait_ready()
    term.table(lambda t: [r["mark"] for r in named(t, "late")] == ["+"], "late marked new")
    term.table(lambda t: [r["mark"] for r in named(t, "late")] == [""], "late no longer marked")
    fat.remove()
    term.table(lambda t: [r["mark"] for r in named(t, "fat")] == ["-"], "fat marked gone")
    term.screen(lambda ls: "1 gone" in ls[0], "the header counting it")
    table = term.table(lambda t: not named(t, "fat") and len(t) == 3, "fat gone")
    assert term.top_alive()

    # smaller and smaller terminals, then a big one again: never a crash
    term.resize(80, 24)
    lines = term.screen(lambda ls: len(ls) <= 24 and "containers: 3" in ls[0] and parse_tables(ls)
                        and len(parse_tables(ls)[-1]) == 3, "an 80x24 screen")
    assert all(len(l) <= 80 for l in lines)
    title = [l for l in lines if re.match(r"^\s+NAME\s", l)][0].split()
    print("80x24 columns: %s" % title)
    assert {"NAME", "CPU%", "MEM/LIMIT", "MEM%", "NETRX/s", "NETTX/s"} <= set(title) and "PSI%" not in title
    assert any(l.startswith("c CPU*") for l in lines)
    for width, height in ((50, 12), (20, 6), (8, 3), (2, 1)):
        term.resize(width, height)
        term.screen(lambda ls: len(ls) <= height and all(len(l) <= width for l in ls), "a %dx%d screen"
                    % (width, height))
        assert term.top_alive(), (width, height)
    term.resize(120, 40)
    term.table(lambda t: len(t) == 3 and "PSI%" in t[0], "the whole table again")
    # keys still work after the resizes
    term.keys("a")
    term.table(lambda t: order(t) == ["alpha", "burn", "late"], "alphabetical after resizing")

    term.keys("q")
    status, stty = term.finished()
    assert_restored(status, stty, 0)


@pytest.mark.parametrize("how,expected", [("C-c", 0), ("SIGTERM", 128 + signal.SIGTERM)])
def test_interrupt_and_sigterm_restore_the_terminal(tree, terminals, how, expected):
    tree.container("one").spawn().wait_ready()
    term = terminals(top_argv(tree.prefix, "--interval", "0.5"), 80, 24)
    term.table(lambda t: len(t) == 1 and t[0]["CPU%"] != "-", "a refresh with rates")
    if how == "C-c":
        term.keys("C-c")
    else:
        os.kill(term.top_pid, signal.SIGTERM)
    status, stty = term.finished()
    assert_restored(status, stty, expected)


# -- plain output -----------------------------------------------------------------------------------------

def run_top(*argv, timeout=120):
    res = subprocess.run(list(argv), cwd=CHECKOUT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_once_figures_against_the_known_load(tree):
    burn = tree.container("burn")
    burner = burn.spawn(duty=0.5, memory_mib=32, children=2)
    burn.set_memory_limit(256 * MiB)
    capped = tree.container("capped")
    capper = capped.spawn(duty=0.5)
    capped.set_cpu_limit(0.2)
    burner.wait_ready()
    capper.wait_ready()
    for attempt in range(5):
        start, before = time.monotonic(), proc_cpu_seconds(burner.pid)
        out = run_top(*top_argv(tree.prefix, "--once", "--interval", "2"))
        expected = 100 * (proc_cpu_seconds(burner.pid) - before) / (time.monotonic() - start)
        print(out)
        lines = out.splitlines()
        assert lines[0].startswith("collectd-cgroups top - ") and "containers: 2" in lines[0]
        tables = parse_tables(lines)
        assert len(tables) == 1 and len(tables[0]) == 2
        table = tables[0]
        row = named(table, "burn")[0]
        assert set(row) == {"mark", "NAME", "RUNTIME", "CPU%", "THR%", "MEM/LIMIT", "MEM%", "WSET", "NETRX/s",
                            "NETTX/s", "BLKR/s", "BLKW/s", "PIDS", "PSI%"}
        shown = float(row["CPU%"])
        print("burn (duty 0.5): CPU%% shown %.1f, /proc/<pid>/stat over the run %.1f" % (shown, expected))
        # what top shows is what the process got, always
        assert abs(shown - expected) <= 10
        if 40 <= expected <= 60:
            break       # else the machine starved the burner (a CI run shares it): once more
    assert 40 <= shown <= 60
    assert row["RUNTIME"] == "cgroup" and row["THR%"] == "-"      # no quota: no throttling share
    mem, limit = (parse_bytes(x) for x in row["MEM/LIMIT"].split("/"))
    assert limit == 256 * MiB and 32 * MiB <= mem < 256 * MiB
    assert abs(float(row["MEM%"]) - 100 * mem / limit) <= 0.1
    assert parse_bytes(row["WSET"]) <= mem
    assert row["PIDS"] == "3"
    # no veth of its own (the host's namespace): no network figures
    assert row["NETRX/s"] == row["NETTX/s"] == "-"
    cap = named(table, "capped")[0]
    print("capped at 0.2 core (duty 0.5): CPU%% %s, THR%% %s" % (cap["CPU%"], cap["THR%"]))
    assert float(cap["CPU%"]) <= 22 and float(cap["THR%"]) >= 50      # the quota holds it at 20 %
    assert table[0]["NAME"] == "cgroup-burn"
    total = float(re.match(r"^CPU ([0-9.]+)%", lines[1]).group(1))
    assert abs(total - shown - float(cap["CPU%"])) <= 0.2


def test_n_refreshes_sorted_and_filtered(tree):
    small = tree.container("small")
    small.spawn(memory_mib=4).wait_ready()
    big = tree.container("big")
    big.spawn(memory_mib=64).wait_ready()
    out = run_top(*top_argv(tree.prefix, "-n", "3", "--interval", "0.5", "--sort", "mem"))
    tables = parse_tables(out.splitlines())
    assert out.count("collectd-cgroups top - ") == 3 and len(tables) == 3
    for table in tables:
        assert [r["NAME"] for r in table] == ["cgroup-big", "cgroup-small"]
        assert all(r["CPU%"] != "-" for r in table)         # every table has rates
    out = run_top(*top_argv(tree.prefix, "-n", "1", "--interval", "0.2", "--sort", "name", "--filter", "SMA"))
    assert [r["NAME"] for r in parse_tables(out.splitlines())[0]] == ["cgroup-small"]


# -- network ------------------------------------------------------------------------------------------------

PAYLOAD = 1000
WIRE = PAYLOAD + 8 + 20 + 14            # UDP, IPv4, Ethernet headers: what eth0's tx_bytes counts
PER_SECOND = 150                        # datagrams: 156300 bytes/s on the wire

SENDER = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start, sent = time.monotonic(), 0
while time.monotonic() - start < 300:
    due = int((time.monotonic() - start) * %d)
    while sent < due:
        s.sendto(b"x" * %d, (%r, 9))
        sent += 1
    time.sleep(0.005)
"""


def test_network_rate_and_sort(lab, terminals):
    sender = lab.box("sender")
    lab.box("quiet")
    code = SENDER % (PER_SECOND, PAYLOAD, sender.peer_addr)
    paced = subprocess.Popen(["nsenter", "--net=/proc/%d/ns/net" % sender.pid, "--", "/usr/bin/python3", "-I",
                              "-S", "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        nominal = PER_SECOND * WIRE
        start, before = time.monotonic(), proc_net_dev(sender.pid)["eth0"][4]
        out = run_top(*top_argv(lab.tree.prefix, "-n", "2", "--interval", "1.5"))
        measured = (proc_net_dev(sender.pid)["eth0"][4] - before) / (time.monotonic() - start)
        print(out)
        tables = parse_tables(out.splitlines())
        shown = [parse_bytes(named(t, "sender")[0]["NETTX/s"]) for t in tables]
        print("sender: NETTX/s shown %s, sent %d B/s nominal, %.0f B/s by /proc/<pid>/net/dev"
              % (shown, nominal, measured))
        assert abs(measured - nominal) <= 0.2 * nominal             # the sender keeps its pace
        for value in shown:
            assert abs(value - nominal) <= 0.2 * nominal, (value, nominal)
        quiet = named(tables[-1], "quiet")[0]
        assert parse_bytes(quiet["NETTX/s"]) < 1000                  # a few bytes at most (ARP)
        totals = [l for l in out.splitlines() if l.startswith("CPU ")][-1]
        total_tx = parse_bytes(re.search(r"NET/s rx \S+ tx (\S+)", totals).group(1))
        assert abs(total_tx - shown[-1]) <= 0.2 * nominal

        # the same in the full-screen view, and the network sort key
        term = terminals(top_argv(lab.tree.prefix, "--interval", "1", "--sort", "name"), 120, 30)
        table = term.table(lambda t: len(t) == 2 and named(t, "sender")[0]["NETTX/s"] != "-", "a rate")
        assert [r["NAME"] for r in table] == ["cgroup-quiet", "cgroup-sender"]
        value = parse_bytes(named(table, "sender")[0]["NETTX/s"])
        print("sender in the full-screen view: NETTX/s %.0f B/s" % value)
        assert abs(value - nominal) <= 0.2 * nominal
        term.keys("n")
        term.table(lambda t: [r["NAME"] for r in t] == ["cgroup-sender", "cgroup-quiet"], "sender first by net")
        term.keys("q")
        status, stty = term.finished()
        assert_restored(status, stty, 0)
    finally:
        paced.kill()
        paced.wait(timeout=10)


@pytest.mark.parametrize("end", ["SIGTERM", "closed pipe"])
def test_plain_output_when_not_a_terminal(tree, end):
    """Without --once or -n into a pipe: plain tables until ended, by SIGTERM or by the reader going away
    (as ``| head``), without a traceback."""
    tree.container("piped").spawn().wait_ready()
    top = subprocess.Popen(top_argv(tree.prefix, "--interval", "0.3"), cwd=CHECKOUT, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    try:
        seen = []

        def two_tables():
            ready, _, _ = select.select([top.stdout], [], [], 0.1)
            if ready:
                seen.append(top.stdout.readline())
            return sum(1 for l in seen if l.startswith("collectd-cgroups top - ")) >= 2 and not seen[-1].strip()
        wait_for(two_tables, 30, "two tables on the pipe", pause=0)
        assert [r["NAME"] for r in parse_tables(seen)[0]] == ["cgroup-piped"]
        if end == "SIGTERM":
            top.send_signal(signal.SIGTERM)
            expected = 128 + signal.SIGTERM
        else:
            top.stdout.close()
            expected = 0
        assert top.wait(timeout=30) == expected
        assert "Traceback" not in top.stderr.read()
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
        top.stderr.close()
        if not top.stdout.closed:
            top.stdout.close()


# -- block I/O ------------------------------------------------------------------------------------------------

BLOCK = 1 << 16
WRITE_RATE = 16 * BLOCK                 # 1 MiB/s of O_DIRECT writes

WRITER = """
import mmap, os, sys, time
buf = mmap.mmap(-1, %d)                 # page-aligned, as O_DIRECT wants
buf.write(b"x" * %d)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
sys.stdin.readline()                    # in its cgroups now
start, done = time.monotonic(), 0
while time.monotonic() - start < 300:
    due = int((time.monotonic() - start) * %d) // %d
    while done < due:
        os.pwrite(fd, buf, (done %% 64) * %d)     # the same 4 MiB over and over
        done += 1
    time.sleep(0.01)
""" % (BLOCK, BLOCK, WRITE_RATE, BLOCK, BLOCK)


def proc_write_bytes(pid):
    with open("/proc/%d/io" % pid) as f:
        return int(dict(l.split(": ") for l in f.read().splitlines())["write_bytes"])


def test_block_write_rate_and_io_sort(tree):
    scratch = None
    for base in ("/var/tmp", CHECKOUT):
        if whole_disk(base) is not None:
            scratch = tempfile.mkdtemp(prefix="ccg-top-", dir=base)
            break
    assert scratch is not None, "no directory on a block device for O_DIRECT writes"
    writer_c = tree.container("writer")
    tree.container("aaa-still").spawn().wait_ready()
    activate_blk_throttle(writer_c.dirs["blkio"], scratch)      # v1 counts nothing on the disk otherwise
    writer = subprocess.Popen([sys.executable, "-I", "-S", "-c", WRITER, os.path.join(scratch, "data")],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, universal_newlines=True,
                              start_new_session=True)
    try:
        for d in sorted(set(writer_c.dirs.values())):
            try:
                with open(d + "/cgroup.procs", "w") as f:
                    f.write(str(writer.pid))
            except OSError:
                if d != writer_c.dirs.get("unified"):   # hybrid: the cgroup2 directory may refuse it
                    raise
        writer.stdin.write("go\n")
        writer.stdin.flush()
        start, before = time.monotonic(), proc_write_bytes(writer.pid)
        out = run_top(*top_argv(tree.prefix, "-n", "2", "--interval", "1.5", "--sort", "io"))
        measured = (proc_write_bytes(writer.pid) - before) / (time.monotonic() - start)
        print(out)
        tables = parse_tables(out.splitlines())
        shown = [parse_bytes(named(t, "writer")[0]["BLKW/s"]) for t in tables]
        print("writer: BLKW/s shown %s, written %d B/s nominal, %.0f B/s by /proc/<pid>/io"
              % (shown, WRITE_RATE, measured))
        assert abs(measured - WRITE_RATE) <= 0.2 * WRITE_RATE
        for value in shown:
            assert abs(value - WRITE_RATE) <= 0.2 * WRITE_RATE, (value, WRITE_RATE)
        for t in tables:        # sorted by I/O: the writer before a name that sorts first
            assert [r["NAME"] for r in t] == ["cgroup-writer", "cgroup-aaa-still"]
            assert parse_bytes(named(t, "aaa-still")[0]["BLKW/s"]) in (None, 0)    # "-": no device listed
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(timeout=10)
        writer.stdin.close()
        shutil.rmtree(scratch)
