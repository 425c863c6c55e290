"""A fast path for the common subset of serpent text: writing and reading plain literals.

The serpent serializer plugin tries these first and falls back to the ``serpent`` library for anything
they do not accept, so they only ever have to be right, never complete:

* :func:`encode` writes exactly the bytes ``serpent.dumps(value, indent=False, module_in_classname=True)``
  writes, for values built only of exact ``str``, ``int``, ``float``, ``bool``, ``None``, ``tuple``,
  ``list`` and ``dict`` (keys ``str``/``int``/``float``/``bool``), at most :data:`MAX_DEPTH` deep.
  Facts from serpent 1.43 it relies on: the header line ``# serpent utf-8 python3.2``; ``repr()`` for
  str, int, bool and None; ``repr()`` for finite floats, ``1e30000``/``-1e30000`` for infinities and
  ``{'__class__':'float','value':'nan'}`` for NaN; no spaces anywhere; 1-tuples written ``(x,)``; dicts
  in insertion order (serpent sorts only when indenting); and these exact types are written before
  serpent consults its registry of special classes, so registrations never change them.
* :func:`decode` parses the literal subset ``ast.literal_eval`` would read the same way: ``None``,
  ``True``, ``False``, decimal ints, floats (``1.5``, ``1e300``), a minus sign glued to a number,
  single- or double-quoted strings without prefixes (with the escapes ``repr()`` writes), tuples,
  lists, dicts and sets, separated by commas, colons and spaces. Anything else -- other whitespace,
  comments but serpent's header line, operators, string prefixes, nesting deeper than
  :data:`MAX_DEPTH`, unhashable keys, ints too long to convert -- returns :data:`UNPARSED` without
  guessing, and the caller hands the data to serpent, whose errors stay what they were. Nothing is
  ever evaluated.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["HEADER", "MAX_DEPTH", "UNPARSED", "decode", "encode", "encode_call"]

#: serpent's first line (a comment) in front of every value
HEADER = "# serpent utf-8 python3.2\n"
_HEADER_LEN = len(HEADER)
#: containers nested deeper than this are left to serpent (on both paths)
MAX_DEPTH = 32
#: what :func:`decode` returns for text it does not fully recognise
UNPARSED: Any = type("Unparsed", (), {"__repr__": lambda self: "UNPARSED", "__slots__": ()})()

_NAN_TEXT = "{'__class__':'float','value':'nan'}"


class _Unsupported(Exception):
    """Raised inside the fast paths: leave this value to serpent."""


# ---- writing -------------------------------------------------------------------------------------
def _float_text(value: float) -> str:
    text = float.__repr__(value)
    last = text[-1]
    if last == "n":  # 'nan': no literal for it
        return _NAN_TEXT
    if last == "f":  # 'inf' / '-inf': a literal that overflows to infinity
        return "-1e30000" if text[0] == "-" else "1e30000"
    return text


def _write(value: Any, level: int, limit: int) -> str:
    """The serpent text of one value at nesting ``level``; _Unsupported for anything else."""
    t = type(value)
    if t is str or t is int:
        return repr(value)  # a huge int raises ValueError (int_max_str_digits), as it does in serpent
    if t is float:
        return _float_text(value)
    if t is bool or value is None:
        return repr(value)
    if level >= limit:
        raise _Unsupported
    level += 1
    if t is tuple:
        if len(value) == 1:
            return "(" + _write(value[0], level, limit) + ",)"
        return "(" + ",".join([_write(v, level, limit) for v in value]) + ")"
    if t is list:
        return "[" + ",".join([_write(v, level, limit) for v in value]) + "]"
    if t is dict:
        parts = []
        for k, v in value.items():
            kt = type(k)
            if kt is str or kt is int:
                parts.append(repr(k) + ":" + _write(v, level, limit))
            elif kt is float or kt is bool:
                parts.append(_write(k, level, limit) + ":" + _write(v, level, limit))
            else:
                raise _Unsupported
        return "{" + ",".join(parts) + "}"
    raise _Unsupported


def encode(value: Any, limit: int = MAX_DEPTH) -> bytes | None:
    """serpent's bytes for ``value`` if it is made of plain literals only, else None.

    ``limit`` caps the container nesting accepted (serpent's writer refuses values nested deeper than
    its ``maximum_level``; pass at most that).
    """
    t = type(value)
    try:
        if t is str or t is int:
            text = repr(value)
        else:
            text = _write(value, 0, limit)
    except Exception:  # _Unsupported, or a value serpent must judge (int too long for repr)
        return None
    return (HEADER + text).encode()


def encode_call(obj: Any, method: Any, vargs: Any, kwargs: Any, limit: int = MAX_DEPTH) -> bytes | None:
    """serpent's bytes for the call tuple ``(obj, method, vargs, kwargs)``, or None (see :func:`encode`)."""
    try:
        if type(obj) is str and type(method) is str:
            head = "(" + repr(obj) + "," + repr(method) + ","
        else:
            head = "(" + _write(obj, 1, limit) + "," + _write(method, 1, limit) + ","
        text = head + _write(vargs, 1, limit) + "," + _write(kwargs, 1, limit) + ")"
    except Exception:
        return None
    return (HEADER + text).encode()


# ---- reading -------------------------------------------------------------------------------------
# One token after optional spaces, or the one non-space character that starts no token (which the
# parser refuses). Digits are spelled [0-9]: Python source has no other digits (\d would match them).
# Plain string bodies exclude backslashes, quotes and control characters; escaped ones allow exactly
# the escapes repr() writes. Only trailing spaces can be left unmatched.
_PLAIN = r"[^{q}\\\x00-\x1f\x7f]"
_ESCAPE = r"""\\(?:[\\'"ntr]|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})"""
_TOKEN = re.compile(
    r" *('" + _PLAIN.format(q="'") + r"*'"
    r"|\"" + _PLAIN.format(q='"') + r"*\""
    r"|'(?:" + _PLAIN.format(q="'") + "|" + _ESCAPE + r")*'"
    r"|\"(?:" + _PLAIN.format(q='"') + "|" + _ESCAPE + r")*\""
    r"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"  # a whole run of digits: linear, whatever follows
    r"|None|True|False"
    r"|[^ ])"
)
_NAMES = {"None": None, "True": True, "False": False}


def _unescape_all(body: str) -> str:
    """``body`` (a string token's text, holding only the escapes repr() writes) with its escapes decoded.

    One C-level pass: characters outside latin-1 become ``\\u``/``\\U`` escapes first, so that the
    ``unicode_escape`` codec gives every character back as it was (a code point above 0x10FFFF raises
    UnicodeDecodeError, a ValueError, and serpent's own error decides).
    """
    return body.encode("latin-1", "backslashreplace").decode("unicode_escape")


def _number(token: str) -> Any:
    if "." in token or "e" in token or "E" in token:
        return float(token)  # Python's float literals may have leading zeros too
    if token[0] == "-":
        if token[1] == "0" and len(token) > 2:
            raise _Unsupported  # "-01" is a syntax error ("-00" is not, but is left to serpent too)
    elif token[0] == "0" and len(token) > 1:
        raise _Unsupported
    return int(token)  # too many digits: ValueError, and serpent's error decides


def _name(token: str) -> Any:
    return _NAMES[token]  # a lone "N" (or other letter) is not a token: KeyError


#: the first character of a scalar token (not a string) -> its converter
_SCALARS: dict[str, Any] = {"N": _name, "T": _name, "F": _name}
for _c in "-0123456789":
    _SCALARS[_c] = _number
del _c

# parser states
_OPENED = 0  # after an opening bracket or a comma: a value or the closing bracket
_NEED_VALUE = 1  # at the start or after a colon: a value only
_AFTER_VALUE = 2  # a separator or a closing bracket
_DONE = 3  # the top-level value is complete
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _parse(text: str, pos: int) -> Any:
    """Parse ``text[pos:]``; _Unsupported for anything outside the subset."""
    # The open containers: the innermost in kind/items/mode, the outer ones saved on the stack.
    # mode for "(": a comma was seen; for "{": 0 undecided, 1 dict (items alternate key and value), 2 set
    stack: list[tuple[str, list[Any] | None, int]] = []
    kind = ""
    items: list[Any] | None = None
    mode = 0
    state = _NEED_VALUE
    top: Any = UNPARSED
    scalars = _SCALARS
    for token in _TOKEN.findall(text, pos):
        first = token[0]
        if first == "'" or first == '"':
            if state > _NEED_VALUE:
                raise _Unsupported
            value: Any = token[1:-1]
            if "\\" in value:
                value = _unescape_all(value)
        elif first == ",":
            if state != _AFTER_VALUE or items is None:
                raise _Unsupported
            if kind == "(":
                mode = 1
            elif kind == "{":
                if mode == 0:
                    mode = 2
                elif mode == 1 and len(items) % 2:
                    raise _Unsupported  # {k, ...}
            state = _OPENED
            continue
        elif first == ":":
            if state != _AFTER_VALUE or kind != "{":
                raise _Unsupported
            count = len(items)  # type: ignore[arg-type]
            if mode == 0 and count == 1:
                mode = 1
            elif mode != 1 or count % 2 == 0:
                raise _Unsupported
            state = _NEED_VALUE
            continue
        elif first == "(" or first == "[" or first == "{":
            if state > _NEED_VALUE or len(stack) >= MAX_DEPTH:
                raise _Unsupported
            stack.append((kind, items, mode))
            kind, items, mode = first, [], 0
            state = _OPENED
            continue
        elif first == ")" or first == "]" or first == "}":
            if state == _NEED_VALUE or items is None or _CLOSERS[first] != kind:
                raise _Unsupported
            if kind == "(":
                value = items[0] if len(items) == 1 and not mode else tuple(items)
            elif kind == "[":
                value = items
            elif mode == 2 or (mode == 0 and items):
                value = set(items)  # an unhashable member raises TypeError: serpent decides
            elif len(items) % 2:
                raise _Unsupported  # {k:v,k}
            else:
                value = dict(zip(items[::2], items[1::2], strict=True))  # unhashable keys: TypeError
            kind, items, mode = stack.pop()
        else:
            if state > _NEED_VALUE:
                raise _Unsupported
            value = scalars[first](token)  # an unknown character: KeyError
        # a complete value
        if items is not None:
            items.append(value)
            state = _AFTER_VALUE
        elif state == _DONE:
            raise _Unsupported
        else:
            top = value
            state = _DONE
    if state != _DONE:
        raise _Unsupported
    return top


# ---- reading through the json module -------------------------------------------------------------
# Most serpent text is single-quoted strings without backslashes or double quotes, decimal numbers in
# JSON's syntax, None/True/False, brackets, commas and colons, no spaces. Such text maps one to one onto
# JSON that the C json scanner reads: strings swap their quotes, the names are spelled in JSON, and
# tuples become lists framed by markers only the json module's non-standard constants can produce
# (NaN, Infinity, -Infinity, which never occur in the text itself):
#   "(" -> "[NaN,"   ",)" -> ",Infinity]"   ")" -> ",-Infinity]"   "()" -> "[NaN,-Infinity]"
# so a tuple is a list that starts with the NaN marker and ends with an Infinity marker (after a
# trailing comma) or a -Infinity marker (no trailing comma: at least two items, "(x)" is not a tuple).
# A marker anywhere else -- or a tuple without its end marker -- means mismatched brackets: refused.
_JSON_UNSAFE = re.compile(r'[\\"\x00-\x1f\x7f]')
# the text outside the strings, each string replaced by \x01
# (a number never ends before a digit: a run of digits cannot be re-split when the match fails, which
# would backtrack exponentially)
_NUMBER = r"-?(?:0|[1-9][0-9]*)(?![0-9])(?:\.[0-9]+(?![0-9]))?(?:[eE][-+]?[0-9]+(?![0-9]))?"
_JSON_STRUCTURE = re.compile(r"(?:[\]\[(){},:\x01]|" + _NUMBER + "|None|True|False)*")


def _nesting_pattern(depth: int) -> re.Pattern[str]:
    """A regex for text whose brackets nest at most ``depth`` deep (any kinds, balanced)."""
    pattern = r"[^\]\[(){}]*"
    for _ in range(depth):  # runs end before a bracket: no ambiguity to backtrack through
        pattern = r"(?:[^\]\[(){}]+(?![^\]\[(){}])|[\[({]" + pattern + r"[\])}])*"
    return re.compile(pattern)


#: the json scanner and _rebuild recurse: text with more openings than MAX_DEPTH must pass this first
_SHALLOW = _nesting_pattern(MAX_DEPTH)
_OPEN_MARK = type("TupleOpen", (), {"__slots__": ()})()
_TRAILING_COMMA_MARK = type("TupleCloseAfterComma", (), {"__slots__": ()})()
_CLOSE_MARK = type("TupleClose", (), {"__slots__": ()})()
_MARKS = {"NaN": _OPEN_MARK, "Infinity": _TRAILING_COMMA_MARK, "-Infinity": _CLOSE_MARK}
_json_scan = json.JSONDecoder(parse_constant=_MARKS.__getitem__).scan_once  # type: ignore[attr-defined]


def _check_items(items: list[Any]) -> None:
    """Rebuild the tuples inside ``items`` in place; _Unsupported for a misplaced marker."""
    for i, item in enumerate(items):
        t = type(item)
        if t is list:
            items[i] = _rebuild(item)
        elif t is dict:
            _rebuild_dict(item)
        elif item is _OPEN_MARK or item is _TRAILING_COMMA_MARK or item is _CLOSE_MARK:
            raise _Unsupported


def _rebuild_dict(value: dict[str, Any]) -> None:
    """Rebuild the tuples inside a dict's values in place (json puts no markers in a dict itself)."""
    for key, item in value.items():
        t = type(item)
        if t is list:
            value[key] = _rebuild(item)
        elif t is dict:
            _rebuild_dict(item)


def _rebuild(value: list[Any]) -> Any:
    """A list from the json scanner as serpent meant it: a list, or a tuple framed by markers."""
    if value and value[0] is _OPEN_MARK:
        end = value.pop()
        if end is _TRAILING_COMMA_MARK:
            items = value[1:]
        elif end is _CLOSE_MARK:
            items = value[1:]
            if len(items) == 1:
                raise _Unsupported  # "(x)" is x itself
        else:
            raise _Unsupported  # "(...]"
        _check_items(items)
        return tuple(items)
    _check_items(value)
    return value


def _parse_json(text: str, pos: int) -> Any:
    """Parse ``text[pos:]`` through the json scanner; _Unsupported unless it fits (see above)."""
    if _JSON_UNSAFE.search(text, pos):
        raise _Unsupported
    parts = text[pos:].split("'")  # outside, string, outside, string, ..., outside
    if not len(parts) % 2:
        raise _Unsupported  # an unterminated string
    outside = "\x01".join(parts[::2])
    if _JSON_STRUCTURE.fullmatch(outside) is None:
        raise _Unsupported
    if (outside.count("[") + outside.count("(") + outside.count("{") > MAX_DEPTH
            and _SHALLOW.fullmatch(outside) is None):
        raise _Unsupported  # too deep (or unbalanced): the token parser decides
    if "N" in outside:
        outside = outside.replace("None", "null")
    if "T" in outside:
        outside = outside.replace("True", "true")
    if "F" in outside:
        outside = outside.replace("False", "false")
    tuples = "(" in outside
    if tuples:
        outside = (outside.replace("()", "[NaN,-Infinity]").replace("(", "[NaN,")
                   .replace(",)", ",Infinity]").replace(")", ",-Infinity]"))
    elif ")" in outside:
        raise _Unsupported
    parts[::2] = outside.split("\x01")
    json_text = '"'.join(parts)
    value, end = _json_scan(json_text, 0)
    if end != len(json_text):
        raise _Unsupported
    t = type(value)
    if tuples:
        if t is list:
            return _rebuild(value)
        if t is dict:
            _rebuild_dict(value)
    elif value is _OPEN_MARK or value is _TRAILING_COMMA_MARK or value is _CLOSE_MARK:
        raise _Unsupported
    return value


#: texts longer than this are checked for escape density first (see decode)
_ESCAPE_CHECK_SIZE = 4096


def decode(data: bytes | bytearray) -> Any:
    """The value serpent.loads would return for ``data``, or :data:`UNPARSED` when not sure."""
    size = len(data)
    if size > _ESCAPE_CHECK_SIZE and data.count(b"\\") > size // 16:
        return UNPARSED  # escape-dense text (binary-like strings): serpent's C tokenizer is faster
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return UNPARSED
    pos = 0
    if text.startswith("#"):
        if not text.startswith(HEADER):
            return UNPARSED
        pos = _HEADER_LEN
    try:
        return _parse_json(text, pos)
    except Exception:  # _Unsupported, StopIteration/ValueError from the scanner: try the token parser
        pass
    try:
        return _parse(text, pos)
    except Exception:  # _Unsupported, unhashable keys, ints too long, ...
        return UNPARSED


# ---- reading calls --------------------------------------------------------------------------------
# The usual call: ('object','method',(scalar,...),{'name':scalar,...} or None), strings plain.
_PLAIN_BODY = r"[^'\\\x00-\x1f\x7f]*"
_SCALAR = r"'" + _PLAIN_BODY + r"'|" + _NUMBER + "|None|True|False"
_FLAT_CALL = re.compile(
    r"\('(" + _PLAIN_BODY + ")','(" + _PLAIN_BODY + r")',\("
    r"((?:(?:" + _SCALAR + "),)*(?:" + _SCALAR + r")?)\),"
    r"(?:None|\{((?:'" + _PLAIN_BODY + "':(?:" + _SCALAR + "),)*(?:'" + _PLAIN_BODY + "':(?:" + _SCALAR + r"))?)\})\)"
)
_SCALAR_TOKEN = re.compile(_SCALAR)
_KEYWORD_TOKEN = re.compile(r"'(" + _PLAIN_BODY + ")':(" + _SCALAR + ")")


def _scalar(token: str) -> Any:
    if token[0] == "'":
        return token[1:-1]
    return _SCALARS[token[0]](token)


def decode_call(data: bytes | bytearray) -> Any:
    """Like :func:`decode`, with a shortcut for calls whose arguments are plain scalars."""
    if data.startswith(b"# serpent utf-8 python3.2\n("):
        try:
            text = data.decode()
        except UnicodeDecodeError:
            return UNPARSED
        match = _FLAT_CALL.fullmatch(text, _HEADER_LEN)
        if match is not None:
            obj, method, args_text, kwargs_text = match.groups()
            try:
                vargs = tuple([_scalar(t) for t in _SCALAR_TOKEN.findall(args_text)])
                if len(vargs) != 1 or args_text[-1] == ",":  # "(x)" is x itself: not this shape
                    kwargs = None
                    if kwargs_text is not None:
                        kwargs = {key: _scalar(t) for key, t in _KEYWORD_TOKEN.findall(kwargs_text)}
                    return obj, method, vargs, kwargs
            except Exception:  # an int too long to convert: serpent decides
                return UNPARSED
    return decode(data)
