"""The rtnetlink codec: bytes and sockets of NETLINK_ROUTE, nothing about containers.

- constants and struct layouts (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/net_namespace.h);
- request builders: :data:`LINKS_REQUEST` (RTM_GETLINK dump, with statistics), :data:`HOST_VETH_REQUEST`
  (RTM_GETLINK dump of veths only, RTEXT_FILTER_SKIP_STATS), :data:`STATS_REQUEST` (RTM_GETSTATS dump of the 64-bit
  link statistics), :func:`nsid_request` (RTM_GETNSID of a namespace descriptor);
- pure parsers: :func:`parse_link` (one RTM_NEWLINK body -> :class:`Link`, or :class:`Malformed`) and
  :func:`parse_messages` (a recv buffer of messages -> links, nsids, statistics; NLMSG_DONE;
  :class:`NetlinkError` for an error reply; nothing else raised: every length is checked, parsing stops at
  the first malformed message);
- socket round trips: :func:`dump` and :func:`dump_stats` (a dump over as many recv() as it takes),
  :func:`get_nsid`, :func:`netns_cookie` (SO_NETNS_COOKIE), :func:`netlink_socket`;
- SIOCGIFNAME name checks (:func:`_name_checks`, :func:`_same_names`): whether interfaces still have the
  names a dump gave them, one ioctl each.

Standard library only: no import from the package.  Interface selection, samples, veth peers and passes are
in :mod:`collectd_cgroups.network`.
"""

import collections
import fcntl
import os
import socket
import struct

# -- netlink constants (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/net_namespace.h) ----------

NETLINK_ROUTE = 0
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWNSID = 88
RTM_GETNSID = 90
RTM_NEWSTATS = 92
RTM_GETSTATS = 94

IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_STATS = 7
IFLA_LINKINFO = 18
IFLA_STATS64 = 23
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_INFO_KIND = 1
RTEXT_FILTER_SKIP_STATS = 1 << 3
NETNSA_NSID = 1
NETNSA_FD = 3
NETNSA_NSID_NOT_ASSIGNED = -1
IFLA_STATS_LINK_64 = 1
SO_NETNS_COOKIE = 71            # asm-generic/socket.h, Linux 5.14+
SIOCGIFNAME = 0x8910

_NLMSGHDR = struct.Struct("=IHHII")         # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")       # family, type, index, flags, change
_NLATTR = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
_ERR = struct.Struct("=i")
# struct rtnl_link_stats64 (and the 32-bit rtnl_link_stats): the first 16 counters, in kernel order
# rx_packets tx_packets rx_bytes tx_bytes rx_errors tx_errors rx_dropped tx_dropped multicast collisions
# rx_length_errors rx_over_errors rx_crc_errors rx_frame_errors rx_fifo_errors rx_missed_errors
_STATS64 = struct.Struct("=16Q")
_STATS32 = struct.Struct("=16I")

_IF_STATS_MSG = struct.Struct("=BBHiI")   # family, pad, pad, ifindex, filter_mask
_IFREQ = struct.Struct("=16si20x")
_COOKIE = struct.Struct("=Q")

_TIMEVAL = struct.Struct("@ll")           # struct timeval: tv_sec, tv_usec (native longs)
RECV_TIMEOUT = 1.0                      # seconds: netlink_socket's SO_RCVTIMEO

_SEQ_LINKS = 1
_SEQ_NSID = 2
_SEQ_STATS = 3
_RECV_SIZE = 65536


def _attr(type_, payload):
    n = _NLATTR.size + len(payload)
    return _NLATTR.pack(n, type_) + payload + b"\0" * (-n & 3)


def _request(type_, flags, seq, body):
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), type_, flags, seq, 0) + body


#: Container side: every link, with statistics.
LINKS_REQUEST = _request(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, _SEQ_LINKS, _IFINFOMSG.pack(0, 0, 0, 0, 0))
#: Host side: veths only, RTEXT_FILTER_SKIP_STATS (names, indexes and links are all the peer mapping needs).
#: The flag drops per-protocol (inet6) and VF statistics; 6.18 still sends IFLA_STATS and IFLA_STATS64.
HOST_VETH_REQUEST = _request(
    RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, _SEQ_LINKS,
    _IFINFOMSG.pack(0, 0, 0, 0, 0) + _attr(IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS))
    + _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"veth\0")))


#: Container side, every pass: the 64-bit link statistics of every interface, nothing else.
STATS_REQUEST = _request(RTM_GETSTATS, NLM_F_REQUEST | NLM_F_DUMP, _SEQ_STATS,
                         _IF_STATS_MSG.pack(0, 0, 0, 0, 1 << (IFLA_STATS_LINK_64 - 1)))


def nsid_request(fd):
    """RTM_GETNSID: the id that the socket's namespace gives the namespace of descriptor ``fd``."""
    return _request(RTM_GETNSID, NLM_F_REQUEST, _SEQ_NSID, b"\0\0\0\0" + _attr(NETNSA_FD, _U32.pack(fd)))


class NetlinkError(OSError):
    """An NLMSG_ERROR reply with a non-zero error: ``errno`` is the kernel's (positive) error number."""


Link = collections.namedtuple("Link", "index name link link_netnsid kind stats")
"""One interface: ifindex, name (str, surrogate-escaped), IFLA_LINK (or None), IFLA_LINK_NETNSID (or None),
kind ("veth", ... or None), stats (the 16 first counters of rtnl_link_stats64, or None)."""


# -- parsing (pure) --------------------------------------------------------------------------------------------
#
# Every length read from a message is checked before it is used: a message's nlmsg_len against the buffer,
# each attribute's nla_len against its message (a nested attribute's against its parent), each fixed struct
# (nlmsghdr, ifinfomsg, if_stats_msg, nlmsgerr's error code, rtgenmsg, an attribute's u32 / s32 / stats
# payload) against the bytes that hold it.  A message that fails a check is malformed: parsing stops there,
# what came before it is kept, and the socket round trips below end the dump instead of waiting on.

class Malformed(ValueError):
    """A netlink message that fails a length check (the text says which); raised by :func:`parse_link`,
    contained by :func:`parse_messages` and the socket round trips."""


_MORE, _DONE, _LOST = 0, 1, 2       # what _walk saw: no end yet; the end of the dump; a message it cannot frame


def parse_link(buf, start, end):
    """A Link from the RTM_NEWLINK message body at ``buf[start:end]`` (after the nlmsghdr).  Malformed
    (a ValueError) when a length does not hold: ``start:end`` not within ``buf`` or shorter than
    ifinfomsg, an attribute (or one nested in IFLA_LINKINFO) shorter than its header or longer than what
    holds it, a fixed-size payload (IFLA_LINK, IFLA_LINK_NETNSID, the statistics) cut short."""
    if start < 0 or end > len(buf) or end - start < _IFINFOMSG.size:
        raise Malformed("RTM_NEWLINK of %d bytes, ifinfomsg is %d" % (end - start, _IFINFOMSG.size))
    _, _, index, _, _ = _IFINFOMSG.unpack_from(buf, start)
    name = link = netnsid = kind = stats = None
    pos = start + _IFINFOMSG.size
    unpack_attr = _NLATTR.unpack_from
    while pos + 4 <= end:
        alen, atype = unpack_attr(buf, pos)
        if alen < 4 or pos + alen > end:
            raise Malformed("RTM_NEWLINK attribute %d of length %d, %d bytes left" % (atype, alen, end - pos))
        atype &= 0x3fff         # NLA_F_NESTED, NLA_F_NET_BYTEORDER
        if atype == IFLA_STATS64:
            if alen < 4 + _STATS64.size:
                raise Malformed("IFLA_STATS64 of %d bytes" % (alen - 4))
            stats = _STATS64.unpack_from(buf, pos + 4)
        elif atype == IFLA_IFNAME:
            name = bytes(buf[pos + 4:pos + alen]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif atype == IFLA_LINK:
            if alen < 8:
                raise Malformed("IFLA_LINK of %d bytes" % (alen - 4))
            link = _U32.unpack_from(buf, pos + 4)[0]
        elif atype == IFLA_LINK_NETNSID:
            if alen < 8:
                raise Malformed("IFLA_LINK_NETNSID of %d bytes" % (alen - 4))
            netnsid = _S32.unpack_from(buf, pos + 4)[0]
        elif atype == IFLA_LINKINFO:
            p, e = pos + 4, pos + alen
            while p + 4 <= e:
                l2, t2 = unpack_attr(buf, p)
                if l2 < 4 or p + l2 > e:
                    raise Malformed("IFLA_LINKINFO attribute %d of length %d, %d bytes left" % (t2, l2, e - p))
                if t2 & 0x3fff == IFLA_INFO_KIND:
                    kind = bytes(buf[p + 4:p + l2]).split(b"\0", 1)[0].decode("ascii", "replace")
                    break
                p += (l2 + 3) & ~3
        elif atype == IFLA_STATS and stats is None:
            if alen < 4 + _STATS32.size:
                raise Malformed("IFLA_STATS of %d bytes" % (alen - 4))
            stats = _STATS32.unpack_from(buf, pos + 4)
        pos += (alen + 3) & ~3
    return Link(index, name, link, netnsid, kind, stats)


def _walk(buf, end, links, nsids, stats, bad, skipping=False):
    """Walk the messages of ``buf[:end]``: (_MORE, _DONE or _LOST, skipping).  Once a message is malformed
    (described in ``bad``, when given), ``skipping`` is set: later messages are only framed, to find the
    NLMSG_DONE (or the NLMSG_ERROR, or the RTM_GETNSID answer) that ends the request, their contents left
    unread.  _LOST: a message that cannot even be framed (its length is below a header or beyond the
    buffer): the rest of the buffer is unreadable, the end of the request may have been in it."""
    if end > len(buf):
        end = len(buf)
    if end <= 0:
        if bad is not None:
            bad.append("empty netlink datagram")
        return _LOST, True
    pos = 0
    status = _MORE
    while pos + 16 <= end:
        mlen, mtype, _, seq, _ = _NLMSGHDR.unpack_from(buf, pos)
        if mlen < 16 or pos + mlen > end:
            if bad is not None:
                bad.append("netlink message of length %d, %d bytes left in the buffer" % (mlen, end - pos))
            return _LOST, True
        body, stop = pos + 16, pos + mlen
        try:
            if mtype == NLMSG_DONE:
                if seq != _SEQ_NSID:
                    status = _DONE
            elif mtype == NLMSG_ERROR:
                if stop - body < _ERR.size:
                    raise Malformed("NLMSG_ERROR of %d bytes" % (stop - body))
                code = -_ERR.unpack_from(buf, body)[0]
                if code or skipping:
                    if seq == _SEQ_NSID:
                        if nsids is not None:
                            nsids.append(None)  # no answer: peers are then matched without the namespace check
                    elif code:
                        raise NetlinkError(code, "netlink: %s" % (os.strerror(code) if 0 < code < 4096
                                                                  else "error %d" % code))
            elif mtype == RTM_NEWNSID:
                if skipping:
                    if nsids is not None:
                        nsids.append(None)
                else:
                    if stop - body < 4:
                        raise Malformed("RTM_NEWNSID of %d bytes" % (stop - body))
                    nsid = NETNSA_NSID_NOT_ASSIGNED
                    p = body + 4
                    while p + 4 <= stop:
                        alen, atype = _NLATTR.unpack_from(buf, p)
                        if alen < 4 or p + alen > stop:
                            raise Malformed("RTM_NEWNSID attribute %d of length %d, %d bytes left"
                                            % (atype, alen, stop - p))
                        if atype == NETNSA_NSID:
                            if alen < 8:
                                raise Malformed("NETNSA_NSID of %d bytes" % (alen - 4))
                            nsid = _S32.unpack_from(buf, p + 4)[0]
                        p += (alen + 3) & ~3
                    if nsids is not None:
                        nsids.append(nsid)
            elif skipping:
                pass
            elif mtype == RTM_NEWSTATS:
                if stop - body < _IF_STATS_MSG.size:
                    raise Malformed("RTM_NEWSTATS of %d bytes, if_stats_msg is %d" % (stop - body, _IF_STATS_MSG.size))
                index = _IF_STATS_MSG.unpack_from(buf, body)[3]
                p = body + _IF_STATS_MSG.size
                found = None
                while p + 4 <= stop:
                    alen, atype = _NLATTR.unpack_from(buf, p)
                    if alen < 4 or p + alen > stop:
                        raise Malformed("RTM_NEWSTATS attribute %d of length %d, %d bytes left"
                                        % (atype, alen, stop - p))
                    if atype & 0x3fff == IFLA_STATS_LINK_64:
                        if alen < 4 + _STATS64.size:
                            raise Malformed("IFLA_STATS_LINK_64 of %d bytes" % (alen - 4))
                        found = _STATS64.unpack_from(buf, p + 4)
                        break
                    p += (alen + 3) & ~3
                if found is not None and stats is not None:
                    stats[index] = found
            elif mtype == RTM_NEWLINK:
                link = parse_link(buf, body, stop)
                if links is not None:
                    links.append(link)
        except Malformed as e:
            if bad is not None:
                bad.append(str(e))
            if mtype == RTM_NEWNSID and nsids is not None:
                nsids.append(None)      # the answer, unreadable
            skipping = True
        pos += (mlen + 3) & ~3
    if pos < end:
        if bad is not None:
            bad.append("netlink buffer ends with %d bytes, less than a message header" % (end - pos))
        return _LOST, True
    return status, skipping


def parse_messages(buf, links, nsids, n=None, stats=None, bad=None):
    """Walk the netlink messages in ``buf[:n]``: RTM_NEWLINK -> ``links`` (list of Link), RTM_NEWNSID ->
    ``nsids`` (list of ints), RTM_NEWSTATS -> ``stats`` ({ifindex: counters}); any of the three may be None
    (those messages are then not kept).  True when a dump's NLMSG_DONE was seen (whatever error code it
    carries: a dump the kernel fails ends so, e.g. RTM_GETSTATS with filter_mask 0).  NetlinkError for an
    NLMSG_ERROR reply.

    Never raises anything else: parsing stops at the first malformed message (a length that does not hold,
    see :func:`parse_link`), described in ``bad`` when given; what came before it is kept.  Only an
    NLMSG_DONE (or an error reply) after it in the same buffer is still seen."""
    status, _ = _walk(buf, len(buf) if n is None else n, links, nsids, stats, bad)
    return status == _DONE


def dump(sock, request, buf=None, nsid_replies=0, bad=None):
    """Send ``request`` (a link dump, then ``nsid_replies`` RTM_GETNSID requests) and read until every
    answer is in.  Returns (links, nsids).

    A malformed message (described in ``bad`` when given) ends the parse: the links before it are
    returned, none after it.  When the messages after it can still be framed, the recv()s go on, unparsed,
    up to the dump's NLMSG_DONE (and the nsid answers), so that the socket is left with nothing pending;
    when they cannot (a message length beyond its buffer), the end of the dump may have been in the lost
    bytes and waiting for it could block for ever: the dump ends there, and the socket may still hold the
    rest of it (the kernel then answers a new dump on that socket with EBUSY): use a new socket."""
    if buf is None:
        buf = bytearray(_RECV_SIZE)
    sock.send(request)
    links = []
    nsids = []
    recv_into = sock.recv_into
    done = skipping = False
    while True:
        n = recv_into(buf)
        status, skipping = _walk(buf, n, None if skipping else links, nsids, None, bad, skipping)
        done = done or status == _DONE
        if status == _LOST or (done and len(nsids) >= nsid_replies):
            return links, nsids


def dump_stats(sock, buf=None, bad=None):
    """{ifindex: the first 16 counters of rtnl_link_stats64} of the socket's namespace (RTM_GETSTATS).
    A malformed message ends the parse as in :func:`dump`."""
    if buf is None:
        buf = bytearray(_RECV_SIZE)
    sock.send(STATS_REQUEST)
    stats = {}
    recv_into = sock.recv_into
    skipping = False
    while True:
        n = recv_into(buf)
        status, skipping = _walk(buf, n, None, None, None if skipping else stats, bad, skipping)
        if status != _MORE:
            return stats


def netns_cookie(sock):
    """The socket's network namespace cookie (unique for the boot), or None before Linux 5.14."""
    try:
        return _COOKIE.unpack(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
    except OSError:
        return None


def _name_checks(found):
    """SIOCGIFNAME requests for the host ends in ``found`` ([(type_instance, Link)]) and the answers that say
    their names are unchanged."""
    return [(_IFREQ.pack(b"", l.index), _IFREQ.pack(l.name.encode("utf-8", "surrogateescape"), l.index))
            for _, l in found]


def _same_names(fd, checks):
    """Whether every interface still has the name it had (one SIOCGIFNAME per interface)."""
    ioctl = fcntl.ioctl
    try:
        for request, expected in checks:
            if ioctl(fd, SIOCGIFNAME, request)[:16] != expected[:16]:
                return False
    except OSError:
        return False
    return True


def get_nsid(sock, fd, buf=None):
    """One RTM_GETNSID round trip: the id the socket's namespace gives the namespace of ``fd``
    (NETNSA_NSID_NOT_ASSIGNED if none, None if the kernel would not say)."""
    if buf is None:
        buf = bytearray(_RECV_SIZE)
    sock.send(nsid_request(fd))
    nsids = []
    while not nsids:
        n = sock.recv_into(buf)
        status, _ = _walk(buf, n, None, nsids, None, None)
        if status == _LOST:
            return None         # the answer is not readable
    return nsids[0]


def netlink_socket(timeout=RECV_TIMEOUT):
    """A NETLINK_ROUTE socket in the calling thread's network namespace (it stays in that namespace).

    Its receives time out after ``timeout`` seconds (SO_RCVTIMEO, kept by the kernel: no poll() per recv):
    a reply whose end never comes (an NLMSG_DONE that is itself malformed, a kernel that never answers)
    then raises BlockingIOError (EAGAIN), an OSError the callers contain, instead of blocking collectd's
    read thread for ever.  The kernel answers in microseconds."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
    if timeout:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _TIMEVAL.pack(
                int(timeout), int((timeout - int(timeout)) * 1e6)))
        except BaseException:
            sock.close()
            raise
    return sock
