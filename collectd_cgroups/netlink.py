"""The rtnetlink codec: bytes and sockets of NETLINK_ROUTE, nothing about containers.

- constants and struct layouts (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h, linux/net_namespace.h);
- request builders: :data:`LINKS_REQUEST` (RTM_GETLINK dump, with statistics), :data:`HOST_VETH_REQUEST`
  (RTM_GETLINK dump of veths only, RTEXT_FILTER_SKIP_STATS), :data:`STATS_REQUEST` (RTM_GETSTATS dump of the 64-bit
  link statistics), :func:`nsid_request` (RTM_GETNSID of a namespace descriptor);
- pure parsers: :func:`parse_link` (one RTM_NEWLINK body -> :class:`Link`) and :func:`parse_messages` (a recv
  buffer of messages -> links, nsids, statistics; NLMSG_DONE; :class:`NetlinkError` for an error reply);
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

def parse_link(buf, start, end):
    """A Link from the RTM_NEWLINK message body at ``buf[start:end]`` (after the nlmsghdr)."""
    _, _, index, _, _ = _IFINFOMSG.unpack_from(buf, start)
    name = link = netnsid = kind = stats = None
    pos = start + _IFINFOMSG.size
    unpack_attr = _NLATTR.unpack_from
    while pos + 4 <= end:
        alen, atype = unpack_attr(buf, pos)
        if alen < 4:
            break
        atype &= 0x3fff         # NLA_F_NESTED, NLA_F_NET_BYTEORDER
        if atype == IFLA_STATS64:
            if alen >= 4 + _STATS64.size:
                stats = _STATS64.unpack_from(buf, pos + 4)
        elif atype == IFLA_IFNAME:
            name = bytes(buf[pos + 4:pos + alen]).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        elif atype == IFLA_LINK:
            link = _U32.unpack_from(buf, pos + 4)[0]
        elif atype == IFLA_LINK_NETNSID:
            netnsid = _S32.unpack_from(buf, pos + 4)[0]
        elif atype == IFLA_LINKINFO:
            p, e = pos + 4, pos + alen
            while p + 4 <= e:
                l2, t2 = unpack_attr(buf, p)
                if l2 < 4:
                    break
                if t2 & 0x3fff == IFLA_INFO_KIND:
                    kind = bytes(buf[p + 4:p + l2]).split(b"\0", 1)[0].decode("ascii", "replace")
                    break
                p += (l2 + 3) & ~3
        elif atype == IFLA_STATS and stats is None:
            if alen >= 4 + _STATS32.size:
                stats = _STATS32.unpack_from(buf, pos + 4)
        pos += (alen + 3) & ~3
    return Link(index, name, link, netnsid, kind, stats)


def parse_messages(buf, links, nsids, n=None, stats=None):
    """Walk the netlink messages in ``buf[:n]``: RTM_NEWLINK -> ``links`` (list of Link), RTM_NEWNSID ->
    ``nsids`` (list of ints), RTM_NEWSTATS -> ``stats`` ({ifindex: counters}).  True when a dump's
    NLMSG_DONE was seen (whatever error code it carries: a dump the kernel fails ends so, e.g. RTM_GETSTATS
    with filter_mask 0).  NetlinkError for an NLMSG_ERROR reply."""
    end = len(buf) if n is None else n
    pos = 0
    done = False
    while pos + 16 <= end:
        mlen, mtype, _, seq, _ = _NLMSGHDR.unpack_from(buf, pos)
        if mlen < 16 or pos + mlen > end:
            break
        if mtype == RTM_NEWSTATS:
            index = _IF_STATS_MSG.unpack_from(buf, pos + 16)[3]
            p = pos + 16 + _IF_STATS_MSG.size
            while p + 4 <= pos + mlen:
                alen, atype = _NLATTR.unpack_from(buf, p)
                if alen < 4:
                    break
                if atype & 0x3fff == IFLA_STATS_LINK_64 and alen >= 4 + _STATS64.size:
                    stats[index] = _STATS64.unpack_from(buf, p + 4)
                    break
                p += (alen + 3) & ~3
        elif mtype == RTM_NEWLINK:
            links.append(parse_link(buf, pos + 16, pos + mlen))
        elif mtype == NLMSG_DONE:
            if seq != _SEQ_NSID:
                done = True
        elif mtype == RTM_NEWNSID:
            nsid = NETNSA_NSID_NOT_ASSIGNED
            p = pos + 16 + 4
            while p + 4 <= pos + mlen:
                alen, atype = _NLATTR.unpack_from(buf, p)
                if alen < 4:
                    break
                if atype == NETNSA_NSID:
                    nsid = _S32.unpack_from(buf, p + 4)[0]
                p += (alen + 3) & ~3
            nsids.append(nsid)
        elif mtype == NLMSG_ERROR:
            code = -_ERR.unpack_from(buf, pos + 16)[0]
            if code:
                if seq == _SEQ_NSID:
                    nsids.append(None)      # no answer: peers are then matched without the namespace check
                else:
                    raise NetlinkError(code, "netlink: %s" % os.strerror(code))
        pos += (mlen + 3) & ~3
    return done


def dump(sock, request, buf=None, nsid_replies=0):
    """Send ``request`` (a link dump, then ``nsid_replies`` RTM_GETNSID requests) and read until every
    answer is in.  Returns (links, nsids)."""
    if buf is None:
        buf = bytearray(_RECV_SIZE)
    sock.send(request)
    links = []
    nsids = []
    recv_into = sock.recv_into
    done = False
    while True:
        n = recv_into(buf)
        done = parse_messages(buf, links, nsids, n) or done
        if done and len(nsids) >= nsid_replies:
            return links, nsids


def dump_stats(sock, buf=None):
    """{ifindex: the first 16 counters of rtnl_link_stats64} of the socket's namespace (RTM_GETSTATS)."""
    if buf is None:
        buf = bytearray(_RECV_SIZE)
    sock.send(STATS_REQUEST)
    stats = {}
    recv_into = sock.recv_into
    while True:
        n = recv_into(buf)
        if parse_messages(buf, None, None, n, stats):
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
        parse_messages(buf, [], nsids, n)
    return nsids[0]


def netlink_socket():
    """A NETLINK_ROUTE socket in the calling thread's network namespace (it stays in that namespace)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
