"""``collectd-cgroups top``: a refreshing table of every container, as ``docker stats`` across runtimes.

Each refresh is one collection pass (the plugin's own code path); rates are the difference between two
passes over the wall time between them.  The figures (:func:`rows_between`, :func:`host_totals`) and the
text of a screen (:func:`screen_lines`) are pure functions; only :func:`_run_curses` touches the terminal.

    collectd-cgroups top                  full-screen view, refreshing every 2 s
    collectd-cgroups top --once           one plain table after two passes --interval apart
    collectd-cgroups top -n 5             five refreshes, plain (as top -b -n 5)
"""

import argparse
import collections
import os
import signal
import sys
import time

from . import __main__ as cli
from .collector import Collector

#: What one pass gives top of a container: levels and counters by name (None: not read).
Snapshot = collections.namedtuple("Snapshot", "key name runtime pod figures")

#: One table row; rates are per second over the interval, None where there is no figure (first pass of a
#: container, a counter that went back, a file the kernel does not have).
Row = collections.namedtuple(
    "Row", "mark name runtime pod cpu throttled mem limit mem_pct working_set net_rx net_tx "
           "blk_read blk_write pids mem_psi")

Totals = collections.namedtuple("Totals", "containers new gone cpu mem net_rx net_tx blk_read blk_write")

NEW, GONE = "+", "-"      # marks of a container that appeared / went away since the last refresh

# one-valued samples top reads, by (type, type_instance): the name of their figure
_LEVELS = {("cpu", "total"): "cpu", ("derive", "cpu_periods"): "periods",
           ("derive", "cpu_throttled_periods"): "throttled", ("memory", "usage"): "mem",
           ("memory", "limit"): "limit", ("memory", "working_set"): "working_set", ("count", "pids"): "pids",
           ("total_time_in_ms", "pressure_memory_some"): "mem_psi"}


def snapshot(item):
    """The figures of one ContainerSamples (collector.collect()) that top shows."""
    figures = {}
    rx = tx = None
    for type_, type_instance, values in item.samples:
        name = _LEVELS.get((type_, type_instance))
        if name is not None:
            figures[name] = values[0]
        elif type_ == "if_octets":          # every interface of the container, summed
            rx = (rx or 0) + values[0]
            tx = (tx or 0) + values[1]
        elif (type_, type_instance) == ("disk_octets", "total"):
            figures["blk_read"], figures["blk_write"] = values[0], values[1]
    if rx is not None:
        figures["net_rx"], figures["net_tx"] = rx, tx
    info = item.container.info
    pod = "/".join(p for p in (info.namespace, info.pod) if p) if info is not None else ""
    return Snapshot(item.container.key, item.instance, item.container.runtime, pod, figures)


def rate(before, after, seconds):
    """(after - before) / seconds, or None: a figure missing from either pass, no time between them, or a
    counter that went back (the container restarted, its cgroup re-created): never a negative rate."""
    if before is None or after is None or seconds <= 0 or after < before:
        return None
    return (after - before) / seconds


def _share(part, whole):
    return None if part is None or not whole else 100.0 * part / whole


def row_between(before, after, seconds, mark=""):
    """The Row of a container seen in two passes ``seconds`` apart (``before`` None: first seen)."""
    f = after.figures
    g = before.figures if before is not None else {}
    r = lambda name: rate(g.get(name), f.get(name), seconds)
    # cpu-total is in 1/100 CPU-second: its rate is the percentage of one core, as docker stats shows it
    periods = r("periods")
    throttled = r("throttled")
    # nr_periods only moves where the cgroup has a quota: no periods, no throttled share
    throttled_pct = 100.0 * throttled / periods if periods and throttled is not None else None
    psi = r("mem_psi")          # ms stalled per second of wall time: /10 gives percent
    return Row(mark, after.name, after.runtime, after.pod, r("cpu"), throttled_pct, f.get("mem"), f.get("limit"),
               _share(f.get("mem"), f.get("limit")), f.get("working_set"), r("net_rx"), r("net_tx"),
               r("blk_read"), r("blk_write"), f.get("pids"), None if psi is None else psi / 10.0)


def gone_row(before):
    """A container of the last pass that this one no longer has: its last levels, no rates."""
    f = before.figures
    return Row(GONE, before.name, before.runtime, before.pod, None, None, f.get("mem"), f.get("limit"),
               _share(f.get("mem"), f.get("limit")), f.get("working_set"), None, None, None, None, f.get("pids"),
               None)


def rows_between(before, after, seconds):
    """Rows from two passes ({key: Snapshot} each, ``before`` None for the first pass): a row per container
    of ``after`` (marked NEW when ``before`` lacks it) and one per container that went away (GONE)."""
    rows = []
    for key, snap in after.items():
        prior = before.get(key) if before is not None else None
        rows.append(row_between(prior, snap, seconds, NEW if before is not None and prior is None else ""))
    if before is not None:
        rows.extend(gone_row(snap) for key, snap in before.items() if key not in after)
    return rows


def host_totals(rows):
    """The header's sums over the containers still there (rates that are unknown count as 0)."""
    live = [r for r in rows if r.mark != GONE]
    total = lambda field: sum(getattr(r, field) or 0 for r in live)
    return Totals(len(live), sum(1 for r in rows if r.mark == NEW), sum(1 for r in rows if r.mark == GONE),
                  total("cpu"), total("mem"), total("net_rx"), total("net_tx"), total("blk_read"),
                  total("blk_write"))


# -- sorting and filtering -----------------------------------------------------------------------------------

#: sort order name -> (key, description); a missing figure sorts last
SORTS = collections.OrderedDict([
    ("cpu", ("c", "CPU")), ("mem", ("m", "MEM")), ("net", ("n", "NET")), ("io", ("i", "I/O")),
    ("name", ("a", "NAME")),
])
SORT_KEYS = dict((key, name) for name, (key, _) in SORTS.items())

_MEASURE = {
    "cpu": lambda r: r.cpu,
    "mem": lambda r: r.mem,
    "net": lambda r: None if r.net_rx is None and r.net_tx is None else (r.net_rx or 0) + (r.net_tx or 0),
    "io": lambda r: None if r.blk_read is None and r.blk_write is None else (r.blk_read or 0) + (r.blk_write or 0),
}


def sort_rows(rows, order="cpu", reverse=False):
    """Rows biggest first (``name``: alphabetical); ``reverse`` flips it; ties and missing figures by name."""
    rows = sorted(rows, key=lambda r: r.name)
    if order == "name":
        return rows[::-1] if reverse else rows
    measure = _MEASURE[order]
    known = [r for r in rows if measure(r) is not None]
    unknown = [r for r in rows if measure(r) is None]
    known.sort(key=measure, reverse=not reverse)
    return known + unknown


def filter_rows(rows, text):
    """Rows whose name contains ``text`` (case-insensitive; empty: all)."""
    if not text:
        return list(rows)
    text = text.lower()
    return [r for r in rows if text in r.name.lower()]


# -- text ----------------------------------------------------------------------------------------------------

def human_bytes(n):
    """At most 8 characters: 999B, 1.0KiB, 999.9MiB, ...; '-' for None."""
    if n is None:
        return "-"
    if n < 1000:
        return "%dB" % n
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        n /= 1024.0
        if n < 999.95 or unit == "EiB":
            return "%.1f%s" % (n, unit)


def _pct(x):
    return "-" if x is None else "%.1f" % x


#: (title, priority, cell): columns in screen order; when the terminal is too narrow the lowest priority
#: (highest number) goes first.  The mark column has no title.
COLUMNS = [
    ("", 0, lambda r: r.mark),
    ("NAME", 0, lambda r: r.name),
    ("RUNTIME", 8, lambda r: r.runtime),
    ("POD", 12, lambda r: r.pod or "-"),
    ("CPU%", 1, lambda r: _pct(r.cpu)),
    ("THR%", 10, lambda r: _pct(r.throttled)),
    ("MEM/LIMIT", 2, lambda r: "%s/%s" % (human_bytes(r.mem), human_bytes(r.limit))),
    ("MEM%", 3, lambda r: _pct(r.mem_pct)),
    ("WSET", 9, lambda r: human_bytes(r.working_set)),
    ("NETRX/s", 4, lambda r: human_bytes(r.net_rx)),
    ("NETTX/s", 4, lambda r: human_bytes(r.net_tx)),
    ("BLKR/s", 5, lambda r: human_bytes(r.blk_read)),
    ("BLKW/s", 5, lambda r: human_bytes(r.blk_write)),
    ("PIDS", 6, lambda r: "-" if r.pids is None else "%d" % r.pids),
    ("PSI%", 11, lambda r: _pct(r.mem_psi)),
]
GAP = 1             # spaces between columns
NAME_CAP = 24       # on a terminal, names longer than this are cut before columns are dropped ...
NAME_MIN = 10       # ... and to no less than this when even the columns that stay do not fit


def table_lines(rows, width=None):
    """The table (title line first) as text lines, columns left-aligned.  ``width`` None: every column
    (plain output); otherwise columns are dropped by priority until the line fits, then names are cut."""
    columns = [c for c in COLUMNS if c[0] != "POD" or any(r.pod for r in rows)]
    cells = [[cell(r) for _, _, cell in columns] for r in rows]
    # the mark column is always one wide, so that a mark appearing does not shift the table
    widths = [max([len(title) or 1] + [len(line[i]) for line in cells]) for i, (title, _, _) in enumerate(columns)]
    keep = list(range(len(columns)))
    if width is not None:
        need = lambda: sum(widths[i] for i in keep) + GAP * (len(keep) - 1)
        name = [i for i, c in enumerate(columns) if c[0] == "NAME"][0]
        natural = widths[name]
        # a long name is cut before any figure is dropped, and gets back what room is left at the end
        widths[name] = min(natural, NAME_CAP)
        for i in sorted(keep, key=lambda i: (columns[i][1], i), reverse=True):
            if need() <= width or columns[i][1] == 0:
                break
            keep.remove(i)
        widths[name] = max(min(widths[name], NAME_MIN), min(natural, widths[name] + width - need()))
    out = []
    for line in [[title for title, _, _ in columns]] + cells:
        text = " " * GAP
        text = text.join(_fit(line[i], widths[i]) for i in keep).rstrip()
        out.append(text if width is None else text[:width])
    return out


def _fit(text, width):
    if len(text) > width:
        return text[:max(0, width - 1)] + "~"
    return text.ljust(width)


def header_lines(totals, interval, clock=None):
    """Two lines: what is shown, then the sums over the containers (short enough for 80 columns)."""
    clock = time.strftime("%H:%M:%S") if clock is None else clock
    changes = "".join((", %d new" % totals.new if totals.new else "", ", %d gone" % totals.gone if totals.gone else ""))
    return ["collectd-cgroups top - %s  every %gs  %d cores  containers: %d%s"
            % (clock, interval, os.cpu_count() or 1, totals.containers, changes),
            "CPU %.1f%%  MEM %s  NET/s rx %s tx %s  BLK/s r %s w %s"
            % (totals.cpu, human_bytes(totals.mem), human_bytes(totals.net_rx), human_bytes(totals.net_tx),
               human_bytes(totals.blk_read), human_bytes(totals.blk_write))]


def footer_line(order, reverse, filter_text):
    keys = "  ".join("%s %s%s" % (key, label, "*" if name == order else "") for name, (key, label) in SORTS.items())
    return "%s  r reverse%s  / filter%s  q quit" % (keys, "*" if reverse else "",
                                                   " [%s]" % filter_text if filter_text else "")


def screen_lines(view, width, height, clock=None):
    """The text of the full-screen view in ``width`` x ``height`` (at most ``height`` lines, each at most
    ``width`` - 1 characters: curses cannot write the last cell of the screen without an error)."""
    width = max(0, width - 1)
    rows = sort_rows(filter_rows(view.rows, view.filter_text), view.order, view.reverse)
    lines = [l[:width] for l in header_lines(host_totals(view.rows), view.interval, clock)]
    if view.status:
        lines.append(view.status[:width])
    else:
        lines.append("")
    table = table_lines(rows, width)
    if view.editing is not None:
        footer = "/" + view.editing
    else:
        footer = footer_line(view.order, view.reverse, view.filter_text)
    room = height - len(lines) - 1
    if room < 1:            # a tiny terminal: the table title and the footer, as far as they go
        return (table[:1] + [footer[:width]])[:max(0, height)]
    return lines + table[:room] + [""] * (room - len(table[:room])) + [footer[:width]]


# -- the passes ----------------------------------------------------------------------------------------------

class Sampler(object):
    """Passes of a collector and the rows between the last two."""

    def __init__(self, collector, clock=time.monotonic):
        self.collector = collector
        self.clock = clock
        self.last = None            # ({key: Snapshot}, time) of the last pass
        self.rows = []
        self.passes = 0

    def step(self, interval=None):
        """One pass; returns the rows against the previous pass (no rates on the first)."""
        when = self.clock()
        current = collections.OrderedDict()
        for item in self.collector.collect(interval=interval):
            current[item.container.key] = snapshot(item)
        before, then = self.last if self.last is not None else (None, when)
        self.rows = rows_between(before, current, when - then)
        self.last = (current, when)
        self.passes += 1
        return self.rows


class View(object):
    """What the full-screen view shows besides the rows: sort order, filter, a status line."""

    def __init__(self, interval, order="cpu", filter_text=""):
        self.interval = interval
        self.order = order
        self.reverse = False
        self.filter_text = filter_text
        self.editing = None         # the filter being typed after '/', None when not typing
        self.status = ""
        self.rows = []

    def key(self, ch):
        """Handle one key (a str); returns False when the view is to end."""
        if self.editing is not None:
            if ch in ("\n", "\r"):
                self.filter_text, self.editing = self.editing, None
            elif ch == "\x1b":
                self.editing = None
            elif ch in ("\x7f", "\b"):
                self.editing = self.editing[:-1]
            elif ch.isprintable():
                self.editing += ch
            return True
        if ch == "q":
            return False
        if ch == "/":
            self.editing = ""
        elif ch == "\x1b":
            self.filter_text = ""
        elif ch == "r":
            self.reverse = not self.reverse
        elif ch in SORT_KEYS:
            self.order = SORT_KEYS[ch]
        return True


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def _run_curses(stdscr, sampler, view, interval, warnings=()):
    import curses
    try:
        curses.curs_set(0)
    except curses.error:
        pass
    if hasattr(curses, "set_escdelay"):
        curses.set_escdelay(25)     # Esc (leave the filter) answered at once, not after 1 s
    stdscr.timeout(100)         # getch waits at most 0.1 s: keys are answered while passes wait
    due = time.monotonic()
    dirty = True
    while True:
        now = time.monotonic()
        if now >= due:
            view.rows = sampler.step(interval)
            if sampler.passes == 1:
                view.status = "(rates from the next refresh on)"
            elif warnings:
                view.status = "%d warning(s), printed on exit; last: %s" % (len(warnings), warnings[-1])
            else:
                view.status = ""
            due = now + interval
            dirty = True
        if dirty:
            _draw(stdscr, view)
            dirty = False
        try:
            ch = stdscr.get_wch()
        except curses.error:        # no key within the timeout
            continue
        if ch == curses.KEY_RESIZE:
            if hasattr(curses, "update_lines_cols"):
                curses.update_lines_cols()
        elif isinstance(ch, int):
            if ch == curses.KEY_BACKSPACE:
                view.key("\x7f")
            elif ch == curses.KEY_ENTER:
                view.key("\n")
        elif not view.key(ch):
            return 0
        dirty = True


def _draw(stdscr, view):
    import curses
    height, width = stdscr.getmaxyx()
    stdscr.erase()
    for y, line in enumerate(screen_lines(view, width, height)):
        try:
            # the title line of the table in reverse video, the header in bold
            attr = curses.A_REVERSE if y == 3 else curses.A_BOLD if y < 2 else curses.A_NORMAL
            stdscr.addnstr(y, 0, line, max(0, width - 1), attr)
        except curses.error:        # resized between getmaxyx() and here: the next refresh redraws
            pass
    try:
        stdscr.refresh()
    except curses.error:
        pass


def _plain(sampler, args, out, warnings):
    """Plain text: a table per refresh, the first after two passes (rates need two)."""
    sampler.step(args.interval)
    due = time.monotonic()
    shown = 0
    while args.count is None or shown < args.count:
        due += args.interval            # passes --interval apart, however long a pass takes
        time.sleep(max(0.0, due - time.monotonic()))
        rows = sort_rows(filter_rows(sampler.step(args.interval), args.filter), args.sort)
        if shown:
            out.write("\n")
        out.write("\n".join(header_lines(host_totals(sampler.rows), args.interval) + [""] + table_lines(rows))
                  + "\n")
        out.flush()
        for w in warnings:
            print("collectd-cgroups top: warning: %s" % w, file=sys.stderr)
        del warnings[:]
        shown += 1
    return 0


def _parse_args(argv):
    p = argparse.ArgumentParser(
        prog="collectd-cgroups top",
        description="A refreshing table of every container: CPU, memory, network, block I/O, pids, pressure. "
                    "Keys: %s, r reverse, / filter by name (Esc clears), q quit." % ", ".join(
                        "%s sort by %s" % (k, label) for k, label in SORTS.values()))
    p.add_argument("--interval", "-d", type=float, default=2.0, metavar="SECONDS",
                   help="seconds between refreshes (default 2)")
    p.add_argument("--once", action="store_true", help="print one table after two passes --interval apart")
    p.add_argument("-n", dest="count", type=int, metavar="N", help="N refreshes as plain text, then exit")
    p.add_argument("--sort", choices=list(SORTS), default="cpu", help="sort order (default cpu)")
    p.add_argument("--filter", default="", metavar="TEXT", help="only containers whose name contains TEXT")
    cli.add_selection_arguments(p)
    args = p.parse_args(argv)
    if not args.interval >= 0.1:
        p.error("--interval must be at least 0.1")
    if args.count is not None and args.count < 1:
        p.error("-n must be at least 1")
    if args.once:
        args.count = 1
    return args


def main(argv):
    args = _parse_args(argv)
    warnings = []
    try:
        collector = Collector(cli.options_from_args(args, keep_files="auto"), warn=warnings.append)
    except ValueError as e:
        print("collectd-cgroups top: %s" % e, file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        sampler = Sampler(collector)
        if args.count is not None or not sys.stdout.isatty():
            return _plain(sampler, args, sys.stdout, warnings)
        import curses
        view = View(args.interval, args.sort, args.filter)
        try:
            # curses.wrapper restores the terminal however the view ends (q, Ctrl-C, SIGTERM, a bug)
            return curses.wrapper(_run_curses, sampler, view, args.interval, warnings)
        except curses.error as e:
            print("collectd-cgroups top: cannot use this terminal (%s); try --once or -n N" % e, file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        return 0
    except _Terminated:
        return 128 + signal.SIGTERM
    except BrokenPipeError:             # plain output into a pipe that closed (| head)
        # nothing more can reach it, not even the interpreter's final flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        collector.close()
        for w in warnings:      # after the terminal is restored: they would spoil the screen
            print("collectd-cgroups top: warning: %s" % w, file=sys.stderr)
