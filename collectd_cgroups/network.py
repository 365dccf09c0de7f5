"""Interface counters of each container's network namespace: interface selection, samples, host veth peers,
containers' first PIDs and the pass.  The rtnetlink codec (requests, parsers, dumps, sockets) is in
:mod:`collectd_cgroups.netlink`; its names are imported here too, as before the split.

Per container and pass (:meth:`NetworkPass.read`):

1. ``netns.KeptPidfds.open_netns`` (``netns.open_netns`` without pidfds): the namespace of the
   container's first PID, checked to still belong to the container (PID reuse) when its pidfd is opened
   and every ``refresh`` passes, and its identity (device, inode);
2. a namespace already read in this pass (a Kubernetes pod, ``--network container:X``) is reported once,
   under one container (see :class:`NetworkPass`), and the host's own namespace not at all;
3. the thread enters the namespace, opens a NETLINK_ROUTE socket there, and goes straight back: the socket
   stays bound to the container's namespace, so everything else runs in the host namespace, and the
   socket is closed before ``read`` returns;
4. the counters: one RTM_GETSTATS dump asking only for the 64-bit link statistics (a few hundred bytes
   per interface).  Names, IFLA_LINK, kind and the peer's namespace id come from an RTM_GETLINK dump
   (about 1.5 kB and 40 attributes per interface: three times the cost), made when a namespace is new
   (by its netns cookie, never reused), when its ifindex set changes, when an interface name differs
   (checked each pass, ``SIOCGIFNAME``, one ioctl per interface), and every ``refresh`` passes.  Where the
   kernel has no netns cookie (before 5.14) every pass uses RTM_GETLINK.

The host side of each veth comes from a dump of the host namespace's veths (RTEXT_FILTER_SKIP_STATS): a container
veth whose peer is in the host namespace (its IFLA_LINK_NETNSID is the id the container's namespace gives
the host's) names the host interface whose ifindex is its IFLA_LINK, and that interface's IFLA_LINK must be
the container interface's ifindex.  The host dump is kept between passes and checked each pass with one
SIOCGIFNAME per peer (made again when a peer is missing or renamed, and every ``refresh`` passes).

Counters are the kernel's 64-bit link statistics, with ``/proc/net/dev``'s meaning: ``if_dropped`` rx is
``rx_dropped + rx_missed_errors``, as ``/proc/net/dev`` and collectd's ``interface`` plugin show it.
Samples are ``(type, type_instance, (rx, tx))``, type_instance = the interface's name inside the
container, sanitized.

Nothing is held between passes: no namespace descriptor, no socket.  Faults cost only the container (or
interface) concerned for the pass and are logged once; :meth:`NetworkPass.read` never raises for them.
"""

import collections
import re
import threading

from . import fs, identifiers, netns
from .readers.base import Limit
from .netlink import (
    HOST_VETH_REQUEST,
    IFLA_STATS_LINK_64,
    LINKS_REQUEST,
    NETNSA_NSID_NOT_ASSIGNED,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    RTM_GETSTATS,
    RTM_NEWSTATS,
    _IF_STATS_MSG,
    _IFREQ,
    _NLMSGHDR,
    _RECV_SIZE,
    _SEQ_STATS,
    _request,
    _name_checks,
    _same_names,
    dump,
    dump_stats,
    get_nsid,
    netlink_socket,
    netns_cookie,
    nsid_request,
    parse_messages,
)

#: MaxInterfaces' default: interfaces reported per container.
MAX_INTERFACES = 256
#: Past this many times MaxInterfaces, a namespace's counters are asked interface by interface for the
#: reported ones: one request costs about 3.5 times what one interface of a dump costs (6.2 against 1.75 us).
CROWDED = 4


class NotHome(netns.NamespaceError):
    """A pass began on a thread that is not in the reader's home namespace."""


# -- interface selection ----------------------------------------------------------------------------------------

class InterfaceSelect(object):
    """Which interfaces to report, as collectd's ``interface`` plugin chooses them.

    ``names``: ``Interface`` option values, each a name or a ``/regex/``.  With none, every interface
    but ``lo`` is reported.  With some: only those (``ignore_selected`` false, the default), or every
    interface but those (``ignore_selected`` true).
    """

    DEFAULT_IGNORED = ("lo",)

    def __init__(self, names=(), ignore_selected=False):
        self.names = list(names)
        if not self.names:
            names, ignore_selected = self.DEFAULT_IGNORED, True
        self.ignore_selected = bool(ignore_selected)
        self.exact = set()
        self.regexes = []
        for n in names:
            if len(n) >= 2 and n.startswith("/") and n.endswith("/"):
                try:
                    self.regexes.append(re.compile(n[1:-1]))
                except re.error as e:
                    raise ValueError("Interface: invalid regular expression %r: %s" % (n, e))
            elif n:
                self.exact.add(n)
            else:
                raise ValueError("Interface: empty name")
        self._cache = {}

    def __call__(self, name):
        hit = self._cache.get(name)
        if hit is None:
            hit = name in self.exact or any(r.search(name) for r in self.regexes)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[name] = hit
        return hit != self.ignore_selected


TYPES = {
    "if_octets": (("rx", "derive"), ("tx", "derive")),
    "if_packets": (("rx", "derive"), ("tx", "derive")),
    "if_errors": (("rx", "derive"), ("tx", "derive")),
    "if_dropped": (("rx", "derive"), ("tx", "derive")),
}


def samples_from_links(links, select=None, bad=None):
    """[(type, type_instance, (rx, tx))] for if_octets, if_packets, if_errors, if_dropped of each selected
    link, in ifindex order.  Returns (samples, {ifindex: type_instance}).  Links without a name or
    statistics, and links whose sanitized name another link of the namespace already has, are skipped
    and described in ``bad``."""
    names = select_links(links, select, bad)
    stats = {l.index: l.stats for l in links if l.stats is not None}
    return samples_from_stats(names, stats, bad), names


def select_links(links, select=None, bad=None, limit=MAX_INTERFACES):
    """{ifindex: type_instance} of the links to report, in ifindex order (see samples_from_links): at most
    ``limit`` of them, the first by ifindex (a readers.base.Limit note in ``bad`` says how many more)."""
    if select is None:
        select = InterfaceSelect()
    names = {}
    taken = {}
    over = 0
    for link in sorted(links, key=lambda l: l.index):
        if len(names) >= limit:
            over += link.name is not None and select(link.name)
            continue
        if not link.name:
            if bad is not None:
                bad.append("interface %d without a name" % link.index)
            continue
        if not select(link.name):
            continue
        ti = identifiers.sanitize(link.name)
        if ti in taken:
            if bad is not None:
                bad.append("interface %r: its name, as %r, is taken by %r" % (link.name, ti, taken[ti]))
            continue
        taken[ti] = link.name
        names[link.index] = ti
    if over and bad is not None:
        bad.append(Limit("MaxInterfaces %d: %d interfaces, the first %d by ifindex reported"
                         % (limit, limit + over, limit)))
    return names


def stats_requests(indexes):
    """RTM_GETSTATS requests (not a dump) for the 64-bit link statistics of each of ``indexes``, in one
    buffer: netlink answers each with one message, RTM_NEWSTATS or an error (ENODEV: gone)."""
    return b"".join(_request(RTM_GETSTATS, NLM_F_REQUEST, _SEQ_STATS,
                             _IF_STATS_MSG.pack(0, 0, 0, index, 1 << (IFLA_STATS_LINK_64 - 1)))
                    for index in indexes)


def stats_of(sock, requests, count, buf):
    """{ifindex: counters} for the ``count`` interfaces asked by ``requests`` (stats_requests): what a
    namespace with more interfaces than MaxInterfaces costs, whatever their number.  An interface gone
    since (an error reply) is absent from the result."""
    sock.send(requests)
    stats = {}
    answered = 0
    recv_into = sock.recv_into
    view = memoryview(buf)
    while answered < count:
        n = recv_into(buf)
        pos = 0
        while pos + _NLMSGHDR.size <= n:
            mlen, mtype = _NLMSGHDR.unpack_from(buf, pos)[:2]
            if mlen < _NLMSGHDR.size or pos + mlen > n:
                break
            if mtype == RTM_NEWSTATS:
                parse_messages(view[pos:pos + mlen], None, None, None, stats)
                answered += 1
            elif mtype == NLMSG_ERROR:
                answered += 1
            pos += (mlen + 3) & ~3
        if not n or pos < n:
            break       # a reply that cannot be framed: what was answered before it is kept
    view.release()
    return stats


def samples_from_stats(names, stats, bad=None):
    """Samples of the interfaces ``names`` ({ifindex: type_instance}) from ``stats`` ({ifindex: the first
    16 counters of rtnl_link_stats64})."""
    out = []
    for index, ti in names.items():
        s = stats.get(index)
        if s is None:
            if bad is not None:
                bad.append("interface %s without statistics" % ti)
            continue
        group = (("if_octets", ti, (s[2], s[3])), ("if_packets", ti, (s[0], s[1])),
                 ("if_errors", ti, (s[4], s[5])), ("if_dropped", ti, (s[6] + s[15], s[7])))
        if max(s[:8]) >= _INT64 or s[15] >= _INT64 or s[6] + s[15] >= _INT64:
            # u64 counters past collectd's int64 DERIVE: no kernel counts that far, a bad reply might
            group = tuple(g for g in group if max(g[2]) < _INT64)
            if bad is not None:
                bad.append("interface %s: counters beyond 2^63 left out" % ti)
        out += group
    return out


_INT64 = 1 << 63


def host_peers(links, names, host_veths, host_nsid):
    """{type_instance: host interface name} for the container's veths whose peer is in the host namespace.

    ``links``: the container's links; ``names``: {ifindex: type_instance} of those reported;
    ``host_veths``: {ifindex: Link} of the host's veths; ``host_nsid``: the id the container's namespace
    gives the host's (None: unknown, then only the two ifindex links are checked)."""
    return {ti: host.name for ti, host in _peer_links(links, names, host_veths, host_nsid)[0]}


def _peer_links(links, names, host_veths, host_nsid):
    """([(type_instance, host Link)], how many reported veths have their peer in the host namespace)."""
    found = []
    wanted = 0
    for link in links:
        ti = names.get(link.index)
        if ti is None or link.kind != "veth" or link.link is None or link.link_netnsid is None:
            continue
        if host_nsid is not None and link.link_netnsid != host_nsid:
            continue        # its peer lives in another namespace (another container's)
        wanted += 1
        host = host_veths.get(link.link)
        if host is not None and host.link == link.index and host.name:
            found.append((ti, host))
    return found, wanted


# -- passes -----------------------------------------------------------------------------------------------------

#: What NetworkPass.read(..., stale=STALE) returns when a remembered PID has exited or left its container.
STALE = object()

NetResult = collections.namedtuple("NetResult", "samples peers shared_with")
"""What :meth:`NetworkPass.read` returns: ``samples`` [(type, type_instance, (rx, tx))], ``peers``
{type_instance: host interface name}, ``shared_with``: None, or the key of the container this namespace's
figures are reported under (then ``samples`` and ``peers`` are empty)."""


class _NsInfo(object):
    """What RTM_GETLINK said about one namespace (kept by netns cookie): its links without counters,
    which of them are reported and under which names, and the id it gives the host's namespace."""

    __slots__ = ("links", "indexes", "checks", "names", "host_nsid", "host_veth", "age", "peers", "requests")

    def __init__(self, links, host_nsid, select, bad, limit=MAX_INTERFACES):
        self.names = select_links(links, select, bad, limit)
        # More interfaces than reported (``lo`` aside): only the reported ones are checked by name each
        # pass, and past CROWDED times the limit their counters are asked for one by one (``requests``)
        # instead of a dump of all, and only they are remembered: the cost stays that of a few times
        # ``limit`` interfaces however many the container makes.  New interfaces get higher ifindexes, so
        # they never displace the first ones; one of these gone (no answer) makes the next pass look again.
        over = len(links) > limit + 1
        self.requests = None
        if len(links) > CROWDED * limit + 1:
            links = [l for l in links if l.index in self.names]
            self.requests = stats_requests(self.names)
        self.links = [l._replace(stats=None) for l in links]
        self.indexes = frozenset(l.index for l in links)
        # SIOCGIFNAME requests and the answers expected while the names stay the same
        self.checks = [(_IFREQ.pack(b"", l.index), _IFREQ.pack(l.name.encode("utf-8", "surrogateescape"), l.index))
                       for l in links if l.name and (not over or l.index in self.names)]
        self.host_nsid = host_nsid
        self.host_veth = host_nsid is not None and any(
            l.kind == "veth" and l.link_netnsid == host_nsid and l.index in self.names for l in links)
        self.age = 0
        # (the host dump it was found in, [(type_instance, host Link)], wanted, SIOCGIFNAME checks, peers)
        self.peers = None


def _noop(key, message, cause=None):
    pass


class NetworkReader(object):
    """Long-lived network state of a collector: options, log, who reports shared namespaces, and what
    RTM_GETLINK said about each namespace (plain data; no descriptor is kept).

    ``select``: an InterfaceSelect.  ``proc_root``: where the PIDs' /proc lives (``<HostRoot>/proc``).
    ``warn_once`` / ``info_once``: ``(key, message)`` loggers that log each key once (the collector's).
    ``host_peers``: also name the host end of each veth.
    ``refresh``: passes between two RTM_GETLINK dumps of an unchanged namespace (the host's too).
    ``max_interfaces``: interfaces reported per namespace (MaxInterfaces).
    ``keep_pidfds``: keep each container PID's pidfd from pass to pass (:class:`netns.KeptPidfds`; off
    with ``KeepFilesOpen false``).

    Build it on a thread in the host's network namespace (collectd's init, the CLI's main thread): that
    namespace is "home", and passes refuse to work on a thread that is not in it.  One pass at a time
    (collectd never runs a read callback concurrently with itself).
    """

    def __init__(self, select=None, proc_root="/proc", warn_once=_noop, info_once=_noop, host_peers=True,
                 refresh=30, max_interfaces=MAX_INTERFACES, keep_pidfds=True):
        self.select = select if select is not None else InterfaceSelect()
        self.max_interfaces = max_interfaces
        self.proc_root = proc_root.rstrip("/") or "/proc"
        self.warn_once = warn_once
        self.info_once = info_once
        self.want_peers = host_peers
        self.refresh = refresh
        self.use_pidfd = netns._pidfd_ok(self.proc_root)
        # The PIDs' pidfds, kept between passes (the cgroup check checked again every ``refresh`` uses).
        self.pidfds = netns.KeptPidfds(self.proc_root, recheck=refresh) if self.use_pidfd and keep_pidfds \
            else None
        self.owners = {}            # namespace identity -> key of the container it is reported under
        self.info = {}              # netns cookie -> _NsInfo
        self.host_veths = None      # {ifindex: Link} of the host's veths, from the last host dump
        self.host_age = 0           # passes since that dump
        self.home_ident = netns.thread_ns_ident()
        self.disabled = None        # why namespace work stopped for good (a stranded thread)
        self._local = threading.local()

    def begin(self, partial=False):
        """A :class:`NetworkPass` for the calling thread; close it when the pass is over.  ``partial``: a
        read outside the passes (a container's final figures, from another thread) that leaves what the
        passes keep as it is (owners, namespaces known, kept pidfds)."""
        return NetworkPass(self, partial)

    def close(self):
        """Close the kept pidfds (the next pass opens them again)."""
        if self.pidfds is not None:
            self.pidfds.close()

    def buffer(self):
        buf = getattr(self._local, "buf", None)
        if buf is None:
            buf = self._local.buf = bytearray(_RECV_SIZE)
        return buf


class NetworkPass(object):
    """One pass over the containers, on one thread::

        with reader.begin() as p:
            for container in containers:
                pid = network.first_pid(container.dirs)
                res = p.read(container.key, pid, container.cgroup) if pid else None
                ...

    ``read`` never raises for a container's faults: it returns None and logs once.

    A namespace shared by several containers is read once per pass and reported under one of them: the
    first container of a pass that reaches it, which then keeps it in later passes for as long as it
    is seen there (so the figures stay under one identifier); the others get ``shared_with`` = its key.
    When that container leaves, the namespace is not reported for one pass, then goes to the first
    container that reaches it.
    """

    def __init__(self, reader, partial=False):
        self.reader = reader
        self.partial = partial
        self.pids = set()           # PIDs whose namespaces this pass opened
        self.thread = threading.get_ident()
        self.home = None
        self.done = {}              # namespace identity -> key it was reported under in this pass
        self.cookies = set()        # netns cookies read in this pass
        self._host_sock = None      # a netlink socket in the home namespace, for this pass
        self._host_dumped = False
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the home namespace descriptor; forget namespaces this pass did not see."""
        if self.closed:
            return
        self.closed = True
        if self.home is not None:
            self.home.close()
            self.home = None
        if self._host_sock is not None:
            self._host_sock.close()
            self._host_sock = None
        reader = self.reader
        if self.partial:
            return
        if reader.pidfds is not None:
            reader.pidfds.retain(self.pids)
        reader.host_age = 0 if self._host_dumped else reader.host_age + 1
        # An owner that did not show up hands its namespace to the first container reaching it next pass.
        reader.owners = dict(self.done)
        if len(reader.info) > len(self.cookies):
            for cookie in [c for c in reader.info if c not in self.cookies]:
                del reader.info[cookie]

    def _home(self):
        if self.home is None:
            home = netns.Home()
            if home.ident != self.reader.home_ident:
                home.close()
                raise NotHome(0, "this thread is not in the network namespace the plugin started in "
                              "(left in another by someone else?): network skipped on it", netns.THREAD_NS)
            self.home = home
        return self.home

    def _host_socket(self):
        if self._host_sock is None:
            self._host_sock = netlink_socket()      # made on this thread, at home: the host's namespace
        return self._host_sock

    def _dump_host(self):
        """{ifindex: Link} of the host namespace's veths, dumped now (at most once per pass)."""
        reader = self.reader
        self._host_dumped = True
        try:
            links, _ = dump(self._host_socket(), HOST_VETH_REQUEST, reader.buffer())
        except OSError as e:
            reader.warn_once(("net", "host dump", e.errno), "cannot list the host's veth interfaces: %s "
                             "(host interface names left out)" % e)
            reader.host_veths = {}
        else:
            reader.host_veths = {l.index: l for l in links if l.kind == "veth"}
        return reader.host_veths

    def _peers(self, info):
        """{type_instance: host interface name} of the namespace's veths whose peer is in the host's.

        The host's veths come from a dump kept between passes, checked each pass with one SIOCGIFNAME
        per peer, and dumped again when a peer is missing or renamed, or every ``refresh`` passes."""
        reader = self.reader
        host = reader.host_veths
        if host is None or (reader.host_age >= reader.refresh and not self._host_dumped):
            host = self._dump_host()
        cached = info.peers
        if cached is not None and cached[0] is host:
            # The same links against the same host dump: the same peers (still checked by name below).
            _, found, wanted, checks, peers = cached
        else:
            found, wanted = _peer_links(info.links, info.names, host, info.host_nsid)
            checks = peers = None
        if not self._host_dumped and (len(found) < wanted or not self._host_names_hold(found, checks)):
            host = self._dump_host()
            found, wanted = _peer_links(info.links, info.names, host, info.host_nsid)
            checks = peers = None
        if peers is None:
            peers = {ti: link.name for ti, link in found}
            info.peers = (host, found, wanted, checks if checks is not None else _name_checks(found), peers)
        return dict(peers)

    def _host_names_hold(self, found, checks=None):
        try:
            fd = self._host_socket().fileno()
        except OSError:
            return False
        return _same_names(fd, checks if checks is not None else _name_checks(found))

    def read(self, key, pid, cgroup, stale=None):
        """Counters of the container ``key`` (any hashable) whose process ``pid`` is in ``cgroup``.

        Returns a NetResult, or None (the container shares the host's namespace, is gone, may not be
        entered, or failed: logged once).  With ``stale`` (a PID remembered from an earlier pass), a PID
        that has exited or left the container returns ``stale`` instead, unlogged: the caller looks for
        another PID of the container.
        """
        reader = self.reader
        if self.closed:
            raise RuntimeError("NetworkPass used after close()")
        if threading.get_ident() != self.thread:
            raise RuntimeError("a NetworkPass belongs to the thread that began it")
        if reader.disabled is not None:
            return None
        try:
            return self._read(key, pid, cgroup)
        except netns.Stranded as e:
            reader.disabled = str(e)
            reader.warn_once(("net", "stranded"), "network figures disabled: %s" % e)
        except NotHome as e:
            reader.warn_once(("net", "not home"), str(e))
        except ImportError as e:    # no cffi in the Python collectd embeds: the same for every container
            reader.disabled = str(e)
            reader.warn_once(("net", "import"), "network figures disabled: cannot load the setns shim: %s (is "
                             "python3-cffi-backend installed for the Python collectd embeds?)" % e)
        except netns.PidMoved as e:
            if stale is not None:
                return stale
            reader.info_once((key, "net", "moved"), "%s: network skipped this pass: %s" % (cgroup, e),
                             cause=("net", "moved"))
        except fs.Gone:
            if stale is not None:
                return stale
            reader.info_once((key, "net", "gone"), "%s: gone before its network could be read" % cgroup,
                             cause=("net", "gone"))
        except OSError as e:        # NamespaceError (EPERM...), netlink errors
            reader.warn_once((key, "net", e.errno), "%s: network skipped: %s" % (cgroup, e),
                             cause=("net", e.errno))
        except Exception as e:      # a bug or a bizarre reply: this container only
            reader.warn_once((key, "net", repr(e)), "%s: network skipped, unexpected error: %r" % (cgroup, e),
                             cause=("net", type(e).__name__))
        return None

    def _read(self, key, pid, cgroup):
        reader = self.reader
        home = self._home()
        if reader.pidfds is not None and not self.partial:
            self.pids.add(pid)
            handle = reader.pidfds.open_netns(pid, cgroup)
        else:
            handle = netns.open_netns(pid, cgroup, reader.proc_root, reader.use_pidfd)
        try:
            ident = handle.ident
            if ident == home.ident:
                reader.info_once((key, "net", "host"), "%s: in the host's network namespace: no network "
                                 "figures of its own" % cgroup, cause=("net", "host"))
                return None
            reported = self.done.get(ident)
            if reported is not None:
                return NetResult([], {}, reported)
            owner = reader.owners.get(ident)
            if owner is not None and owner != key:
                # Shared, and reported under another container in the last pass: keep it there.
                return NetResult([], {}, owner)
            # In, a socket, out: the socket stays bound to the container's namespace; all else runs here.
            sock = netns.call_in(handle, home, netlink_socket)
        finally:
            handle.close()
        bad = []
        with sock:
            samples, info = self._samples(sock, home, bad)
        peers = {}
        if info.host_veth and reader.want_peers:
            peers = self._peers(info)
        for entry in bad:
            reader.warn_once((key, "net", "bad", entry), "%s: %s%s" % (
                cgroup, entry, "" if isinstance(entry, Limit) else " (skipped)"), cause=("net", "bad"))
        self.done[ident] = key
        return NetResult(samples, peers, None)

    def _samples(self, sock, home, bad):
        """(samples, _NsInfo) of the socket's namespace: RTM_GETSTATS, with RTM_GETLINK only when what is
        known about the namespace may be stale."""
        reader = self.reader
        buf = reader.buffer()
        cookie = netns_cookie(sock)
        info = reader.info.get(cookie) if cookie is not None else None
        if info is not None and info.age < reader.refresh:
            if info.requests is not None:
                stats = stats_of(sock, info.requests, len(info.indexes), buf)
            else:
                stats = dump_stats(sock, buf)
            if info.indexes == stats.keys() and _same_names(sock.fileno(), info.checks):
                info.age += 1
                self.cookies.add(cookie)
                return samples_from_stats(info.names, stats, bad), info
        want_nsid = reader.want_peers
        links, nsids = dump(sock, LINKS_REQUEST + nsid_request(home.fd) if want_nsid else LINKS_REQUEST,
                            buf, 1 if want_nsid else 0)
        host_nsid = nsids[0] if nsids else None
        if host_nsid == NETNSA_NSID_NOT_ASSIGNED \
                and any(l.kind == "veth" and l.link_netnsid is not None for l in links):
            # Asked before the dump gave the host an id in this namespace: ask again.
            host_nsid = get_nsid(sock, home.fd, buf)
        info = _NsInfo(links, host_nsid, reader.select, bad, reader.max_interfaces)
        if cookie is not None:
            reader.info[cookie] = info
            self.cookies.add(cookie)
        return samples_from_stats(info.names, {l.index: l.stats for l in links}, bad), info
