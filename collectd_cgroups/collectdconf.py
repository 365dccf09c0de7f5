"""collectd's configuration files, read the way collectd 5.12 reads them, for the CLI's ``--config``: the
CLI must find the same ``<Module "collectd_cgroups">`` block as the plugin, with the same values, or it
would report other containers, or the same ones under other names.

- :func:`parse` is liboconfig (src/liboconfig/scanner.l and parser.y): the same tokens by the same
  longest-match rule, so ``"a\\.b"`` is ``a.b``, ``1.5e3`` is 1.5 and "e3", ``True`` a string;
- :func:`read_config` adds collectd's ``Include`` (src/daemon/configfile.c);
- :func:`module_blocks` finds the plugin's blocks in ``<Plugin python>``;
- :func:`block_options` hands a block to the plugin's own :func:`config.parse_config` and names the line
  of the option it refuses.

Nodes look like the ``collectd.Config`` objects collectd's python plugin builds: ``key``, ``values`` (a
tuple of str, float (every number) and bool), ``children``, ``parent``; and ``path``, ``line`` for messages.
"""

import fnmatch
import glob
import os
import re

from . import config

MODULE = "collectd_cgroups"     # the name the plugin registers its config callback under
MAX_DEPTH = 8                   # collectd's CF_MAX_DEPTH: Include nesting


class ConfigFileError(ValueError):
    """A file that cannot be read or parsed, or an option the plugin refuses: ``FILE:LINE: message``."""

    def __init__(self, path, line, message):
        self.path, self.line, self.message = path, line, message
        super().__init__("%s:%s %s" % (path, "%d:" % line if line else "", message))


class Node(object):
    """One option or block, as collectd's ``collectd.Config``."""

    def __init__(self, key, values=(), children=(), parent=None, path=None, line=None):
        self.key = key
        self.values = tuple(values)
        self.parent = parent
        self.path = path
        self.line = line
        self.children = tuple(children)

    def __repr__(self):
        return "Node(%r, %r, %d children, %s:%s)" % (self.key, self.values, len(self.children), self.path, self.line)


# -- the scanner (scanner.l) ------------------------------------------------------------------------------
# flex takes the longest match of all rules and, among equally long ones, the first rule: so the rules are
# kept in scanner.l's order, NUMBER's alternatives apart (Python's alternation takes the first that
# matches, not the longest: "0789" is OCT "07" but DEC "0789").

_WS = r"[ \t\b]"
_EOL = r"(?:\r\n|\n)"
_QUOTED = r'(?:[^\\"]|\\.)*'        # '.' is not a newline in flex either; a raw newline may be quoted
_PORT = (r"(?:6(?:5(?:5(?:3[0-5]|[0-2][0-9])|[0-4][0-9][0-9])|[0-4][0-9][0-9][0-9])"
         r"|[1-5][0-9][0-9][0-9][0-9]|[1-9][0-9]?[0-9]?[0-9]?)")
_IP_BYTE = r"(?:2(?:5[0-5]|[0-4][0-9])|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = r"%s\.%s\.%s\.%s(?::%s)?" % (_IP_BYTE, _IP_BYTE, _IP_BYTE, _IP_BYTE, _PORT)
_H = r"[0-9A-Fa-f]{1,4}"
_V6_PART = r"(?:%s:%s|%s)" % (_H, _H, _IPV4)
_IPV6_BASES = [p.replace("H", _H).replace("P", _V6_PART) for p in (
    r"(?:H:){6}P", r"::(?:H:){5}P", r"(?:H)?::(?:H:){4}P", r"(?:(?:H:){0,1}H)?::(?:H:){3}P",
    r"(?:(?:H:){0,2}H)?::(?:H:){2}P", r"(?:(?:H:){0,3}H)?::H:P", r"(?:(?:H:){0,4}H)?::P",
    r"(?:(?:H:){0,5}H)?::H", r"(?:(?:H:){0,6}H)?::")]
_IPV6 = list(_IPV6_BASES) + [r"\[%s\](?::%s)?" % (b, _PORT) for b in _IPV6_BASES]

_RULES = [(kind, re.compile(pattern)) for kind, pattern in
          [("skip", _WS), ("skip", r"#.*"), ("skip", r"\\" + _EOL), ("eol", _EOL),
           ("slash", r"/"), ("open", r"<"), ("close", r">"),
           ("true", r"true|yes|on"), ("false", r"false|no|off"), ("word", _IPV4)]
          + [("word", p) for p in _IPV6]
          + [("number", p) for p in (r"[+-]?[0-9]*\.[0-9]+(?:[eE][+-][0-9]+)?", r"0[xX][0-9a-fA-F]+",
                                     r"0[0-7]+", r"[+-]?[0-9]+")]
          + [("quoted", r'"%s"' % _QUOTED), ("word", r"[0-9A-Za-z_]+"),
             ("multiline", r'"%s\\%s' % (_QUOTED, _EOL))]]

# In a string continued with a trailing backslash (flex's ML state): the next line's leading blanks are
# dropped, then one more piece ends with another backslash-newline or with the closing quote.
_ML_BLANKS = re.compile(_WS + "+")
_ML_MORE = re.compile(r'[^ \t\b]%s\\%s' % (_QUOTED, _EOL))
_ML_END = re.compile(r'[^ \t\b]%s"' % _QUOTED)

_BACKSLASH_NEWLINE = re.compile(r"\\" + _EOL + r"\Z")


def _unquote(text):
    """parser.y's unquote(): the quotes off, and every backslash dropped, keeping the character after it."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        text = re.sub(r"\\(.?)", r"\1", text[1:-1], flags=re.DOTALL)
    return text


def _number(text):
    """strtod(): decimal, or hexadecimal with 0x (a leading 0 is not octal for strtod)."""
    return float(int(text, 16)) if text[:2] in ("0x", "0X") else float(text)


def tokens(text, path="<string>"):
    """[(kind, value, line)]: kind is eol, slash, open, close, word, quoted, number or bool; a last ("end")."""
    out = []
    pos, line, n = 0, 1, len(text)
    while pos < n:
        if text[pos] in " \t\b":     # the commonest token, one character long
            pos += 1
            continue
        best, best_len = None, 0
        for kind, rule in _RULES:
            m = rule.match(text, pos)
            if m and len(m.group()) > best_len:
                best, best_len = kind, len(m.group())
        if best is None:
            # flex would copy the character to stdout and go on, dropping it from the value (Filter *.conf
            # is Filter "conf"): refused here, since what collectd does with such a line is not what it says.
            if text[pos] == '"':
                raise ConfigFileError(path, line, "string not closed")
            raise ConfigFileError(path, line, "unexpected character %r (quote the value)" % text[pos])
        piece = text[pos:pos + best_len]
        start = line
        if best == "multiline":
            buffer = _BACKSLASH_NEWLINE.sub("", piece)
            end = pos + best_len
            while True:
                m = _ML_BLANKS.match(text, end)
                if m:
                    end = m.end()
                more, last = _ML_MORE.match(text, end), _ML_END.match(text, end)
                if last and (not more or len(last.group()) > len(more.group())):   # a tie: flex's first rule
                    buffer += last.group()
                    end = last.end()
                    break
                if not more:
                    raise ConfigFileError(path, start, "string not closed")
                buffer += _BACKSLASH_NEWLINE.sub("", more.group())
                end = more.end()
            piece = text[pos:end]
            best, value = "quoted", _unquote(buffer)
            best_len = end - pos
        elif best == "quoted":
            value = _unquote(piece)
        elif best == "number":
            value = _number(piece)
        elif best in ("true", "false"):
            best, value = "bool", best == "true"
        else:
            value = piece
        if best != "skip":
            out.append((best, value, start))
        line += piece.count("\n")
        pos += best_len
    out.append(("end", None, line))
    return out


# -- the parser (parser.y) --------------------------------------------------------------------------------

_SAY = {"eol": "end of line", "slash": "'/'", "open": "'<'", "close": "'>'", "end": "end of file"}


class _Parser(object):
    def __init__(self, text, path):
        self.path = path
        self.toks = tokens(text, path)
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def take(self):
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok, expecting):
        kind, value, line = tok
        near = _SAY.get(kind) or repr(value)
        if kind == "end" and expecting == "end of line":
            expecting += " (collectd needs a newline after the last line)"
        raise ConfigFileError(self.path, line, "syntax error near %s, expecting %s" % (near, expecting))

    def expect(self, kind, expecting):
        tok = self.take()
        if tok[0] != kind:
            self.fail(tok, expecting)
        return tok

    def arguments(self):
        values = []
        while self.peek()[0] in ("word", "quoted", "number", "bool"):
            values.append(self.take()[1])
        return values

    def statements(self, parent, opened=None):
        """The statements up to the end of the file, or to the ``</Key>`` of ``opened`` (a block Node)."""
        children = []
        while True:
            tok = self.take()
            kind, value, line = tok
            if kind == "eol":
                continue
            if kind == "end":
                if opened is not None:
                    raise ConfigFileError(self.path, opened.line, "<%s> is not closed" % opened.key)
                return children
            if kind == "word":
                values = self.arguments()
                if not values:
                    self.fail(self.peek(), "a value after %s" % value)
                self.expect("eol", "end of line")
                children.append(Node(value, values, parent=parent, path=self.path, line=line))
                continue
            if kind != "open":
                self.fail(tok, "an option or a block")
            if self.peek()[0] == "slash":
                self.take()
                key = self.expect("word", "a block name")[1]
                self.expect("close", "'>'")
                self.expect("eol", "end of line")
                if opened is None:
                    raise ConfigFileError(self.path, line, "</%s> closes no block" % key)
                if key != opened.key:       # strcmp: the case must match too
                    raise ConfigFileError(self.path, line, "<%s> (line %d) closed by </%s>"
                                          % (opened.key, opened.line, key))
                return children
            key = self.expect("word", "a block name")[1]
            block = Node(key, self.arguments(), parent=parent, path=self.path, line=line)
            self.expect("close", "'>' or a value")
            self.expect("eol", "end of line after <%s ...>" % key)
            block.children = tuple(self.statements(block, block))
            if block.values or block.children:      # parser.y drops a block with neither
                children.append(block)


def parse(text, path="<string>"):
    """The top-level nodes of one file's text (no Include expanded).  ConfigFileError names the line."""
    parser = _Parser(text, path)
    try:
        return parser.statements(None)
    except RecursionError:      # blocks nested by the hundred: a message, not a traceback
        raise ConfigFileError(path, parser.peek()[2], "blocks nested too deep")


# -- Include (configfile.c) -------------------------------------------------------------------------------

def read_config(path, warn=lambda message: None):
    """The top-level nodes of the configuration ``path`` with every top-level Include expanded, as collectd
    does: ``Include "PATH"`` or ``<Include "PATH"> Filter "GLOB" </Include>``; PATH may hold shell
    wildcards, a directory includes its files (subdirectories too, not those starting with '.') in sorted
    order, Filter keeps the files whose name matches; Include inside a block is not expanded (collectd
    neither).  An included path that does not exist is only worth a ``warn`` (collectd warns and goes on);
    any other failure raises ConfigFileError."""
    return _include_all(_parse_file(path), 0, warn)


def _parse_file(path):
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as e:
        raise ConfigFileError(path, None, "cannot read: %s" % (e.strerror or e))
    return parse(text, path)


def _include_all(nodes, depth, warn):
    out = []
    for node in nodes:
        if node.key.lower() != "include":
            out.append(node)
            continue
        if len(node.values) != 1 or not isinstance(node.values[0], str):
            raise ConfigFileError(node.path, node.line, "Include: expects one string (a path)")
        pattern = None
        for child in node.children:
            if child.key.lower() != "filter" or len(child.values) != 1 or not isinstance(child.values[0], str):
                raise ConfigFileError(child.path, child.line, "%s: only Filter \"GLOB\" may be given in an "
                                      "<Include> block" % child.key)
            pattern = child.values[0]
        out.extend(_read_generic(node.values[0], pattern, depth + 1, node, warn))
    return out


def _read_generic(path, pattern, depth, include, warn):
    if depth >= MAX_DEPTH:
        raise ConfigFileError(include.path, include.line, "Include: %s nested more than %d deep"
                              % (path, MAX_DEPTH))
    # wordexp(): the words a wildcard matches, sorted, or the path itself when it matches nothing.
    out = []
    for name in (sorted(glob.glob(path)) if glob.has_magic(path) else []) or [path]:
        if os.path.isdir(name):
            out.extend(_read_dir(name, pattern, depth, include, warn, ()))
        elif os.path.isfile(name):
            if pattern is None or fnmatch.fnmatchcase(os.path.basename(name), pattern):
                out.extend(_include_all(_parse_file(name), depth, warn))
        else:
            warn("%s:%d: Include: %s: %s" % (include.path, include.line, name, "neither a file nor a directory"
                                             if os.path.exists(name) else "no such file or directory"))
    return out


def _read_dir(path, pattern, depth, include, warn, above):
    real = os.path.realpath(path)
    if real in above:       # a symbolic link to a directory above: collectd would loop until it crashes
        warn("%s:%d: Include: %s: a loop of directories, not followed" % (include.path, include.line, path))
        return []
    try:
        names = sorted(os.path.join(path, n) for n in os.listdir(path) if not n.startswith("."))
    except OSError as e:
        raise ConfigFileError(include.path, include.line, "Include: %s: %s" % (path, e.strerror or e))
    out = []
    for name in names:
        if os.path.isdir(name):
            out.extend(_read_dir(name, pattern, depth, include, warn, above + (real,)))
        elif pattern is None or fnmatch.fnmatchcase(os.path.basename(name), pattern):
            # collectd logs a drop-in it cannot parse and goes on without it: refused here instead, so that
            # the CLI never reports with a configuration other than the one meant.
            out.extend(_include_all(_parse_file(name), depth, warn))
    return out


# -- the plugin's blocks ----------------------------------------------------------------------------------

def module_blocks(nodes, name=MODULE):
    """Every ``<Module "collectd_cgroups">`` of every ``<Plugin python>``, in order (python.c matches both
    names without regard to case).  collectd hands each to the plugin as it is (with parent None)."""
    def named(node, key, value):
        return (node.key.lower() == key and len(node.values) >= 1 and isinstance(node.values[0], str)
                and node.values[0].lower() == value)
    return [child for node in nodes if named(node, "plugin", "python")
            for child in node.children if named(child, "module", name.lower())]


class _Block(object):
    """A block with some of its children only, for parse_config (which reads key and children)."""

    def __init__(self, block, children):
        self.key, self.values, self.parent, self.children = block.key, block.values, None, tuple(children)


def block_options(block, leave_out=()):
    """(Options, lowercased keys given) of a block through the plugin's own config.parse_config.
    ``leave_out``: lowercased keys not handed over (the command line gives them).  A ConfigError becomes a
    ConfigFileError naming the line of the first option whose addition makes the block refused (the second
    of two, a Match whose regex is bad, a HostRoot that is no directory ...)."""
    children = [c for c in block.children if c.key.lower() not in leave_out]
    try:
        options = config.parse_config(_Block(block, children))[0]
    except config.ConfigError as error:
        culprit = block
        for n in range(1, len(children) + 1):
            try:
                config.parse_config(_Block(block, children[:n]))
            except config.ConfigError as e:
                culprit, error = children[n - 1], e
                break
        raise ConfigFileError(culprit.path, culprit.line, str(error))
    return options, set(c.key.lower() for c in children)
