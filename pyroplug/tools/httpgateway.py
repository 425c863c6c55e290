"""HTTP gateway: call objects registered in a name server with plain HTTP, get JSON back.

``pyroplug-httpgateway`` (or ``python -m pyroplug.tools.httpgateway``) runs Pyro4's ``pyro4-httpgateway``:
a WSGI application, :class:`HttpGateway`, served by the standard library's ``wsgiref`` server (one thread
per request). The application is a plain WSGI callable, so any WSGI server can host it instead;
:data:`pyro_app` is a ready-made instance configured through the same attributes as Pyro4's
``pyro_app`` (``ns_regex``, ``hmac_key``, ``gateway_key``, ``comm_timeout``).

URL scheme (Pyro4's):

- ``GET /pyro/``: an HTML index of the exposed names (at most 10) with their methods and attributes.
- ``GET|POST /pyro/<objectname>/<method>``: call ``method`` of the object registered as ``objectname``.
  The keyword arguments come from the query string, and for POST also from an
  ``application/x-www-form-urlencoded`` or ``multipart/form-data`` body (text values; a name given
  once becomes a string, given more often a list of strings) or from a JSON object body
  (``Content-Type: application/json``; typed values). The reply is the result as JSON, exactly as the
  object's daemon serialized it with the json serializer.
- ``/pyro/<objectname>/<attribute>``: the value of an exposed attribute (property); no arguments.
- ``/pyro/<objectname>/$meta``: ``{"methods": [...], "attributes": [...]}``.

Headers: ``X-Pyro-Correlation-Id`` (a UUID; used for the call, and returned on every reply of the API,
a new one when the request had none), ``X-Pyro-Options: oneway`` (do not wait for the result; the reply
is an empty 200), ``X-Pyro-Gateway-Key`` (must equal the gateway key when one is set; the ``$key``
parameter works too).

Statuses: 200 with the JSON result; 500 with the remote exception as Pyro4's JSON serializer writes it
(``{"__class__": ..., "__exception__": true, "args": [...], "attributes": {...}}``); 403 when the
gateway key is wrong or missing, or the name does not match the expose regex; 404 for an unknown
name (a ``NamingError``), method or attribute, or a path that is not ``/pyro/<name>/<method>``;
400 for bad arguments; 405 for other HTTP methods; 413 for bodies over :attr:`HttpGateway.max_body`;
502 when the object's daemon cannot be reached, 503 when the name server cannot, 504 on a timeout.
Every error reply of the API is a JSON exception dict of that shape. Differences from Pyro4's gateway,
on purpose: Pyro4 answers 500 for every failure (an unknown name included) and plain text for 403;
it opens a new connection per request, while this gateway keeps a small pool of connected proxies per
object name (checked for liveness before reuse, re-resolved at the name server when the object moved
or after :attr:`HttpGateway.lookup_ttl` seconds), so concurrent requests never share a connection and
sequential ones do not reconnect. Generator results are collected (at most
:attr:`HttpGateway.max_stream_items` items) into a JSON list; Pyro4's gateway returns ``null``.

Security: only names matching the expose regex are reachable (Pyro4's default is ``http\\.``; an empty
regex exposes every name), and anyone who can reach the HTTP port can call every method of those
objects: set a gateway key, and bind to localhost (the default) or put the gateway behind a proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import email.message
import email.parser
import email.policy
import hmac as _hmac
import html
import json
import logging
import os
import re
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pyroplug.core import errors
from pyroplug.core.config import Config
from pyroplug.core.config import config as global_config
from pyroplug.core.constants import VERSION
from pyroplug.core.context import current_context
from pyroplug.core.nsclient import locateNS
from pyroplug.core.protocol import FLAGS_EXCEPTION, FLAGS_ITEMSTREAMRESULT, FLAGS_ONEWAY
from pyroplug.core.proxy import Proxy
from pyroplug.core.serializer import class_to_dict
from pyroplug.core.uri import URI
from pyroplug.tools.cli import EXIT_OK, error

__all__ = [
    "DEFAULT_EXPOSE",
    "DEFAULT_PORT",
    "GATEWAY_KEY_ENV",
    "HttpGateway",
    "ThreadingWSGIServer",
    "main",
    "make_gateway_server",
    "make_parser",
    "pyro_app",
]

log = logging.getLogger(__name__)

#: Pyro4's default expose regex: only names starting with ``http.`` are reachable
DEFAULT_EXPOSE = r"http\."
#: Pyro4's default HTTP port
DEFAULT_PORT = 8080
#: the environment variable holding the gateway key (Pyro4's name)
GATEWAY_KEY_ENV = "PYRO_HTTPGATEWAY_KEY"

JSON_TYPE = "application/json; charset=utf-8"
CORRELATION_HEADER = "X-Pyro-Correlation-Id"
#: how many entries the index page lists (Pyro4's limit)
INDEX_LIMIT = 10

_StartResponse = Callable[..., Any]


class _HttpError(Exception):
    """An error reply: HTTP status line plus the exception described in the JSON body."""

    def __init__(self, status: str, exc: BaseException) -> None:
        super().__init__(status)
        self.status = status
        self.exc = exc


@dataclass
class _Entry:
    """What the gateway keeps for one object name: its URI and idle connected proxies."""

    uri: URI
    stamp: float
    idle: list[Proxy] = field(default_factory=list)


def _connection_dropped(proxy: Proxy) -> bool:
    """True when the proxy's idle connection was closed by the peer (or has unexpected data waiting)."""
    conn = proxy._pyroConnection
    if conn is None:
        return False
    try:
        if conn.buffered():
            return True
        fd = conn.fileno()
    except Exception:  # a transport without a socket: cannot tell, assume alive
        return False
    if fd < 0:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # an idle connection must not be readable: EOF or garbage


def _error_body(exc: BaseException) -> bytes:
    """The JSON exception dict Pyro4's gateway sends for an exception (non-JSON values as their repr)."""
    try:
        data = class_to_dict(exc)
    except Exception:
        data = {"__class__": f"{type(exc).__module__}.{type(exc).__qualname__}", "__exception__": True,
                "args": [str(exc)], "attributes": {}}
    return json.dumps(data, default=repr).encode("utf-8")


def _singlyfy(parameters: dict[str, list[str]]) -> dict[str, Any]:
    """Values given once become plain strings; repeated ones stay lists (Pyro4's rule)."""
    return {k: v[0] if len(v) == 1 else v for k, v in parameters.items()}


def _parse_qs(text: str) -> dict[str, list[str]]:
    return urllib.parse.parse_qs(text, keep_blank_values=False, encoding="utf-8", errors="replace")


def _content_type(value: str) -> email.message.Message:
    msg = email.message.Message()
    msg["Content-Type"] = value or "application/octet-stream"
    return msg


class HttpGateway:
    """The WSGI application: HTTP requests become calls on name-server-registered objects.

    ``ns_regex`` limits the reachable names (``re.match``; empty: all), ``hmac_key`` is the Pyro HMAC key
    for the name server and the objects, ``gateway_key`` the key HTTP clients must send, ``comm_timeout``
    the Pyro COMMTIMEOUT of every call (0: none). ``ns_host``/``ns_port`` locate the name server (None:
    Pyro4's search via NS_HOST/NS_PORT and broadcast). ``max_idle`` connected proxies are kept per name.
    Thread safe: a proxy serves one request at a time. :meth:`close` releases every connection.
    """

    #: largest request body read, in bytes (413 above)
    max_body = 10 * 1024 * 1024
    #: seconds a name's URI is trusted before it is looked up again
    lookup_ttl = 30.0
    #: the most items collected from a generator result
    max_stream_items = 10000

    def __init__(
        self,
        ns_regex: str = DEFAULT_EXPOSE,
        hmac_key: bytes | str | None = None,
        gateway_key: bytes | str | None = None,
        comm_timeout: float | None = None,
        ns_host: str | None = None,
        ns_port: int | None = None,
        max_idle: int = 4,
    ) -> None:
        self._lock = threading.Lock()
        self._ns_lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._ns: Proxy | None = None
        self._hmac: bytes | None = None
        self._gateway_key: bytes | None = None
        self._timeout = 0.0
        self._regex: re.Pattern[str] | None = None
        self._ns_regex = ""
        self.ns_host = ns_host
        self.ns_port = ns_port
        self.max_idle = max_idle
        self.ns_regex = ns_regex
        self.hmac_key = hmac_key
        self.gateway_key = gateway_key
        self.comm_timeout = global_config.COMMTIMEOUT if comm_timeout is None else comm_timeout

    # ------------------------------------------------------------------ settings (Pyro4's pyro_app attributes)
    @property
    def ns_regex(self) -> str:
        """The expose regex: only names it matches (at their start) are reachable; empty exposes all."""
        return self._ns_regex

    @ns_regex.setter
    def ns_regex(self, value: str | None) -> None:
        self._regex = re.compile(value) if value else None
        self._ns_regex = value or ""

    @property
    def hmac_key(self) -> bytes | None:
        """The Pyro HMAC key for the name server and the objects (changing it drops pooled connections)."""
        return self._hmac

    @hmac_key.setter
    def hmac_key(self, value: bytes | str | None) -> None:
        self._hmac = (value.encode("utf-8") if isinstance(value, str) else value) or None
        self.close()

    @property
    def gateway_key(self) -> bytes | None:
        """The key HTTP clients must send (X-Pyro-Gateway-Key header or $key parameter); None: no key."""
        return self._gateway_key

    @gateway_key.setter
    def gateway_key(self, value: bytes | str | None) -> None:
        self._gateway_key = (value.encode("utf-8") if isinstance(value, str) else value) or None

    @property
    def comm_timeout(self) -> float:
        """The Pyro COMMTIMEOUT of the gateway's proxies in seconds (0: none)."""
        return self._timeout

    @comm_timeout.setter
    def comm_timeout(self, value: float | None) -> None:
        self._timeout = float(value or 0.0)
        self.close()

    def _proxy_config(self) -> Config:
        cfg = global_config.copy()
        cfg.SERIALIZER = "json"  # the gateway talks json only: the reply bytes go to the HTTP client as-is
        cfg.COMMTIMEOUT = self._timeout
        cfg.METADATA = True
        return cfg

    def close(self) -> None:
        """Release every pooled connection and the name-server proxy (they are recreated on demand)."""
        with self._lock:
            entries, self._entries = self._entries, {}
        for entry in entries.values():
            for proxy in entry.idle:
                proxy._pyroRelease()
        with self._ns_lock:
            ns, self._ns = self._ns, None
        if ns is not None:
            ns._pyroRelease()

    # ------------------------------------------------------------------ name server
    def _nameserver(self) -> Proxy:
        """The bound name-server proxy (call with _ns_lock held)."""
        if self._ns is None:
            ns = locateNS(self.ns_host, self.ns_port, hmac_key=self._hmac)
            ns._pyroTimeout = self._timeout or None
            self._ns = ns
        return self._ns

    def _with_nameserver(self, action: Callable[[Proxy], Any]) -> Any:
        """Run ``action(ns)``; on a broken connection locate the name server again and retry once."""
        with self._ns_lock:
            for attempt in range(2):
                ns = self._nameserver()
                try:
                    return action(ns)
                except errors.CommunicationError:
                    ns._pyroRelease()
                    self._ns = None
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    def lookup(self, name: str) -> URI:
        """The URI of ``name`` at the name server (NamingError when unknown)."""
        found = self._with_nameserver(lambda ns: ns.lookup(name))
        return found if isinstance(found, URI) else URI(str(found))

    # ------------------------------------------------------------------ proxy pool
    def _new_proxy(self, uri: URI) -> Proxy:
        proxy = Proxy(uri, config=self._proxy_config())
        proxy._pyroHmacKey = self._hmac
        return proxy

    def _checkout(self, name: str, fresh: bool = False) -> tuple[_Entry, Proxy]:
        """An idle proxy for ``name`` (or a new one), with the entry it belongs to."""
        now = time.monotonic()
        if not fresh:
            with self._lock:
                entry = self._entries.get(name)
                if entry is not None and now - entry.stamp <= self.lookup_ttl:
                    return entry, self._take(entry)
        uri = self.lookup(name)
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.uri != uri:
                stale = entry.idle if entry is not None else []
                entry = self._entries[name] = _Entry(uri, now)
            else:
                stale = []
                entry.stamp = now
            proxy = self._take(entry)
        for old in stale:
            old._pyroRelease()
        return entry, proxy

    def _take(self, entry: _Entry) -> Proxy:
        """Pop a live idle proxy of ``entry`` or make a new one (call with _lock held)."""
        while entry.idle:
            proxy = entry.idle.pop()
            if not _connection_dropped(proxy):
                return proxy
            proxy._pyroRelease()
        return self._new_proxy(entry.uri)

    def _checkin(self, name: str, entry: _Entry, proxy: Proxy, reusable: bool) -> None:
        """Return a proxy to the pool (or release it when broken, surplus or outdated)."""
        if reusable and proxy._pyroConnection is not None:
            with self._lock:
                if self._entries.get(name) is entry and len(entry.idle) < self.max_idle:
                    entry.idle.append(proxy)
                    return
        proxy._pyroRelease()

    def _forget(self, name: str, entry: _Entry) -> None:
        with self._lock:
            if self._entries.get(name) is entry:
                del self._entries[name]
        for proxy in entry.idle:
            proxy._pyroRelease()

    def _connected(self, name: str) -> tuple[_Entry, Proxy]:
        """A connected proxy for ``name``; a stale URI (connect fails) is looked up again once."""
        entry, proxy = self._checkout(name)
        if proxy._pyroConnection is not None:
            return entry, proxy
        try:
            self._bind(proxy)
            return entry, proxy
        except errors.CommunicationError:
            self._forget(name, entry)  # the object may have moved: ask the name server again
        entry, proxy = self._checkout(name, fresh=True)
        self._bind(proxy)
        return entry, proxy

    @staticmethod
    def _bind(proxy: Proxy) -> None:
        try:
            proxy._pyroBind()
        except BaseException:
            proxy._pyroRelease()
            raise

    # ------------------------------------------------------------------ WSGI
    def __call__(self, environ: dict[str, Any], start_response: _StartResponse) -> Iterable[bytes]:
        """The WSGI entry point."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or ""
        try:  # PEP 3333: the path arrives as latin-1 decoded bytes; URLs carry UTF-8
            path = path.encode("latin-1").decode("utf-8")
        except UnicodeError:
            pass
        path = path.lstrip("/")
        if path in ("", "pyro"):
            target = environ.get("SCRIPT_NAME", "").rstrip("/") + "/pyro/"
            start_response("302 Found", [("Location", target), ("Content-Length", "0")])
            return []
        if not path.startswith("pyro/"):
            return self._plain(start_response, "404 Not Found", b"Error 404: Not Found")
        if method not in ("GET", "POST"):
            start_response("405 Method Not Allowed", [("Content-Type", "text/plain"), ("Allow", "GET, POST")])
            return [b"Error 405: Method Not Allowed"]
        path = path[5:]
        if not path:
            return self._index(start_response)
        return self._api(environ, path, start_response)

    @staticmethod
    def _plain(start_response: _StartResponse, status: str, body: bytes) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _json(start_response: _StartResponse, status: str, body: bytes, corr: uuid.UUID | None) -> list[bytes]:
        headers = [("Content-Type", JSON_TYPE), ("Content-Length", str(len(body)))]
        if corr is not None:
            headers.append((CORRELATION_HEADER, str(corr)))
        start_response(status, headers)
        return [body] if body else []

    def _api(self, environ: dict[str, Any], path: str, start_response: _StartResponse) -> list[bytes]:
        corr: uuid.UUID | None = None
        try:
            header = environ.get("HTTP_X_PYRO_CORRELATION_ID", "").strip()
            try:
                corr = uuid.UUID(header) if header else uuid.uuid4()
            except ValueError as exc:
                raise _HttpError("400 Bad Request", ValueError(f"invalid {CORRELATION_HEADER}: {exc}")) from None
            matched = re.fullmatch(r"(.+)/(.+)", path, re.DOTALL)
            if not matched:
                raise _HttpError("404 Not Found", errors.NamingError("expected /pyro/<objectname>/<method>"))
            name, member = matched.groups()
            parameters = self._parameters(environ)
            self._authorize(environ, parameters, name)
            options = {o.strip().lower() for o in environ.get("HTTP_X_PYRO_OPTIONS", "").split(",")}
            status, body = self._call(name, member, parameters, corr, "oneway" in options)
            return self._json(start_response, status, body, corr)
        except _HttpError as exc:
            log.info("%s %s: %s %r", environ.get("REQUEST_METHOD"), path, exc.status, exc.exc)
            return self._json(start_response, exc.status, _error_body(exc.exc), corr)

    def _authorize(self, environ: dict[str, Any], parameters: dict[str, Any], name: str) -> None:
        """403 unless the gateway key matches (when set) and the name is exposed; drops ``$key``."""
        given = parameters.pop("$key", None)
        if self._gateway_key:
            key = environ.get("HTTP_X_PYRO_GATEWAY_KEY", "") or (given if isinstance(given, str) else "")
            if not _hmac.compare_digest(key.encode("utf-8"), self._gateway_key):
                raise _HttpError("403 Forbidden", errors.SecurityError("403 Forbidden - incorrect gateway api key"))
        if self._regex is not None and not self._regex.match(name):
            raise _HttpError("403 Forbidden",
                             errors.SecurityError("403 Forbidden - access to the requested object has been denied"))

    def _parameters(self, environ: dict[str, Any]) -> dict[str, Any]:
        """The call's keyword arguments: query string, then a form or JSON body (POST)."""
        query = environ.get("QUERY_STRING", "") or ""
        with contextlib.suppress(UnicodeError):
            query = query.encode("latin-1").decode("utf-8")
        values = _parse_qs(query)
        extra: dict[str, Any] = {}
        if environ.get("REQUEST_METHOD") == "POST":
            ctype = _content_type(environ.get("CONTENT_TYPE", ""))
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise _HttpError("400 Bad Request", ValueError("invalid Content-Length")) from None
            if length > self.max_body:
                raise _HttpError("413 Payload Too Large", ValueError(f"request body larger than {self.max_body} bytes"))
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            kind = ctype.get_content_type()
            charset = ctype.get_content_charset() or "utf-8"
            if kind == "application/x-www-form-urlencoded":
                form = _parse_qs(body.decode(charset, "replace"))
                for key, items in values.items():  # the body's values first, then the query's (as cgi.parse)
                    form.setdefault(key, []).extend(items)
                values = form
            elif kind == "multipart/form-data":
                for key, items in self._multipart(environ.get("CONTENT_TYPE", ""), body).items():
                    values[key] = items + values.get(key, [])
            elif kind == "application/json" or kind.endswith("+json"):
                try:
                    extra = json.loads(body.decode(charset)) if body.strip() else {}
                except (ValueError, UnicodeError) as exc:
                    raise _HttpError("400 Bad Request", ValueError(f"invalid JSON body: {exc}")) from None
                if not isinstance(extra, dict):
                    raise _HttpError("400 Bad Request", TypeError("the JSON body must be an object (the keyword arguments)"))
        parameters = _singlyfy(values)
        parameters.update(extra)
        return parameters

    @staticmethod
    def _multipart(content_type: str, body: bytes) -> dict[str, list[str]]:
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1", "replace")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        if not msg.is_multipart():
            raise _HttpError("400 Bad Request", ValueError("invalid multipart/form-data body"))
        values: dict[str, list[str]] = {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if not isinstance(name, str) or not name:
                continue
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            values.setdefault(name, []).append(data.decode(part.get_content_charset() or "utf-8", "replace"))
        return values

    def _call(self, name: str, member: str, parameters: dict[str, Any], corr: uuid.UUID, oneway: bool) -> tuple[str, bytes]:
        """Perform the request on the object; (status, JSON body). Raises _HttpError for error replies."""
        try:
            entry, proxy = self._connected(name)
        except errors.NamingError as exc:
            raise _HttpError(self._naming_status(exc), exc) from None
        except errors.TimeoutError as exc:
            raise _HttpError("504 Gateway Timeout", exc) from None
        except errors.CommunicationError as exc:
            raise _HttpError("502 Bad Gateway", exc) from None
        except Exception as exc:  # PyroError (no exposed members, ...) or a broken registration
            raise _HttpError("500 Internal Server Error", exc) from None
        reusable = False
        previous_corr = current_context.correlation_id
        current_context.correlation_id = corr
        try:
            if member == "$meta":
                meta = {"methods": sorted(proxy._pyroMethods), "attributes": sorted(proxy._pyroAttrs)}
                reusable = True
                return "200 OK", json.dumps(meta).encode("utf-8")
            args: tuple[Any, ...] = ()
            kwargs: dict[str, Any] | None = parameters
            if member in proxy._pyroAttrs:
                if parameters:
                    raise _HttpError("400 Bad Request", ValueError("attribute lookup can't have query parameters"))
                method, args, kwargs = "__getattr__", (member,), None
            elif member in proxy._pyroMethods:
                method = member
            else:
                raise _HttpError("404 Not Found", AttributeError(
                    f"remote object '{name}' has no exposed attribute or method '{member}'"))
            flags = FLAGS_ONEWAY if oneway else 0
            proxy._pyroRawWireResponse = True
            try:
                msg = proxy._pyroInvoke(method, args, kwargs, flags=flags)
            finally:
                proxy._pyroRawWireResponse = False
            reusable = True
            if msg is None:  # oneway (asked for, or the method is oneway): no result
                return "200 OK", b""
            if msg.flags & FLAGS_ITEMSTREAMRESULT and msg.annotations.get("STRM"):
                # a generator result (sent as an exception message carrying a stream id): read the items
                body = self._collect_stream(proxy, msg)
                reusable = True
                return "200 OK", body
            if msg.flags & FLAGS_EXCEPTION:
                return "500 Internal Server Error", bytes(msg.data)
            return "200 OK", bytes(msg.data)
        except errors.TimeoutError as exc:
            raise _HttpError("504 Gateway Timeout", exc) from None
        except errors.CommunicationError as exc:
            raise _HttpError("502 Bad Gateway", exc) from None
        except _HttpError:
            reusable = True
            raise
        except Exception as exc:
            log.warning("error calling %s.%s", name, member, exc_info=True)
            raise _HttpError("500 Internal Server Error", exc) from None
        finally:
            current_context.correlation_id = previous_corr
            self._checkin(name, entry, proxy, reusable)

    def _collect_stream(self, proxy: Proxy, msg: Any) -> bytes:
        """Read a streamed (generator) result into a list and return it as JSON."""
        from pyroplug.core.streams import StreamResultIterator

        stream_id = bytes(msg.annotations.get("STRM", b"")).decode()
        stream = StreamResultIterator(stream_id, proxy)
        items: list[Any] = []
        try:
            for item in stream:
                items.append(item)
                if len(items) >= self.max_stream_items:
                    break
        finally:
            stream.close()
        ser = proxy._ser
        assert ser is not None
        return bytes(ser.dumps(items))

    @staticmethod
    def _naming_status(exc: errors.NamingError) -> str:
        """404 for an unknown name (the name server's remote answer), 503 when the name server is unreachable."""
        if getattr(exc, "_pyroTraceback", None) is not None:
            return "404 Not Found"
        return "503 Service Unavailable"

    # ------------------------------------------------------------------ index page
    def _index(self, start_response: _StartResponse) -> list[bytes]:
        try:
            names, location = self._with_nameserver(self._exposed_names)
        except errors.PyroError as exc:
            log.warning("name server error: %s", exc)
            body = f"Cannot connect to the Pyro name server ({type(exc).__name__}: {exc}). Is it running? " \
                   "Refresh the page to retry.".encode()
            return self._plain(start_response, "503 Service Unavailable", body)
        rows = []
        for name in names:
            rows.append(self._index_row(name))
        page = _INDEX_PAGE.format(
            location=html.escape(str(location)),
            regex=html.escape(self._ns_regex or "(everything)"),
            limit=INDEX_LIMIT,
            rows="\n".join(rows) or '<tr><td colspan="3">(no exposed names)</td></tr>',
            version=html.escape(VERSION),
        ).encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))])
        return [page]

    def _exposed_names(self, ns: Proxy) -> tuple[list[str], str]:
        listed = ns.list(regex=self._ns_regex) if self._ns_regex else ns.list()
        return sorted(listed)[:INDEX_LIMIT], ns._pyroUri.location

    def _index_row(self, name: str) -> str:
        link = html.escape(urllib.parse.quote(name), quote=True)
        label = html.escape(name)
        try:
            entry, proxy = self._connected(name)
        except errors.PyroError as exc:
            return f"<tr><td>{label}</td><td colspan=\"2\">error: {html.escape(f'{type(exc).__name__}: {exc}')}</td></tr>"
        try:
            methods = " ".join(
                f'<a href="{link}/{html.escape(urllib.parse.quote(m), quote=True)}" class="call">{html.escape(m)}</a>'
                for m in sorted(proxy._pyroMethods)) or "-"
            attrs = " ".join(
                f'<a href="{link}/{html.escape(urllib.parse.quote(a), quote=True)}" class="call">{html.escape(a)}</a>'
                for a in sorted(proxy._pyroAttrs)) or "-"
        finally:
            self._checkin(name, entry, proxy, True)
        return f'<tr><td><a href="{link}/$meta" class="call">{label}</a></td><td>{methods}</td><td>{attrs}</td></tr>'


_INDEX_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Pyro HTTP gateway</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #99a; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
pre {{ border: 1px solid #99a; padding: 0.6em; white-space: pre-wrap; }}
</style>
</head>
<body>
<h1>Pyro HTTP gateway</h1>
<p>Call objects of the name server at <code>{location}</code> over HTTP; replies are JSON.
Only names matching <code>{regex}</code> are exposed; the first {limit} are listed.</p>
<table>
<tr><th>name (metadata)</th><th>methods</th><th>attributes</th></tr>
{rows}
</table>
<p>URL scheme: <code>/pyro/&lt;name&gt;/&lt;method&gt;?arg=value</code> (GET, or POST with a form or a JSON
object body), <code>/pyro/&lt;name&gt;/&lt;attribute&gt;</code> and <code>/pyro/&lt;name&gt;/$meta</code>.
Headers: <code>X-Pyro-Correlation-Id</code>, <code>X-Pyro-Options: oneway</code>,
<code>X-Pyro-Gateway-Key</code>.</p>
<h2>Last call</h2>
<pre id="request">(click a link above; methods are called without arguments)</pre>
<pre id="response"></pre>
<p>pyroplug, Pyro protocol version {version}</p>
<script>
"use strict";
for (const link of document.querySelectorAll("a.call")) {{
  link.addEventListener("click", async (event) => {{
    event.preventDefault();
    document.getElementById("request").textContent = "GET " + link.href;
    const reply = await fetch(link.href);
    const text = await reply.text();
    let shown = text;
    try {{ shown = JSON.stringify(JSON.parse(text), null, 2); }} catch (e) {{}}
    document.getElementById("response").textContent = reply.status + " " + reply.statusText + "\\n" + shown;
  }});
}}
</script>
</body>
</html>
"""

#: the application with Pyro4's default settings; configure it like Pyro4's ``pyro_app``
pyro_app = HttpGateway()


# ---------------------------------------------------------------------- server and CLI
class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """The wsgiref server handling each request in its own (daemon) thread."""

    daemon_threads = True
    allow_reuse_address = True


class _IPv6ThreadingWSGIServer(ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def make_gateway_server(host: str, port: int, app: HttpGateway, quiet: bool = False) -> WSGIServer:
    """A threading wsgiref server for ``app`` on ``host:port`` (port 0: any free port); not started."""
    server_class = _IPv6ThreadingWSGIServer if ":" in host else ThreadingWSGIServer
    if quiet:
        return make_server(host, port, app, server_class=server_class, handler_class=_QuietHandler)
    return make_server(host, port, app, server_class=server_class)


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pyroplug-httpgateway`` (Pyro4's options plus --nshost/--nsport)."""
    parser = argparse.ArgumentParser(
        prog="pyroplug-httpgateway",
        description="Run Pyro4's HTTP gateway: call objects registered in the name server over HTTP and get "
                    "JSON back (GET/POST http://HOST:PORT/pyro/<name>/<method>?arg=value). Anyone who can "
                    "reach the port can call every method of the exposed objects: use -e and a gateway key.",
        epilog=f"Keys are better given in the environment: PYRO_HMAC_KEY (Pyro HMAC key) and {GATEWAY_KEY_ENV} "
               "(gateway key). The name server is found as Pyro4 finds it (PYRO_NS_HOST, PYRO_NS_PORT, "
               "broadcast) unless --nshost is given. Exit codes: 0 after Ctrl-C or SIGTERM, 1 when it cannot "
               "start, 2 for usage errors.",
    )
    parser.add_argument("-H", "--host", default="localhost", help="hostname to bind the server on (default: %(default)s)")
    parser.add_argument("-p", "--port", type=int, default=DEFAULT_PORT, help="port to bind the server on (default: %(default)s; 0: any free port)")
    parser.add_argument("-e", "--expose", default=DEFAULT_EXPOSE,
                        help="a regex of object names to expose (default: %(default)s; '' exposes every name)")
    parser.add_argument("-k", "--pyrokey", help="the HMAC key to use to connect with Pyro (deprecated: set PYRO_HMAC_KEY)")
    parser.add_argument("-g", "--gatewaykey", help=f"the key HTTP clients must send (deprecated: set {GATEWAY_KEY_ENV})")
    parser.add_argument("-t", "--timeout", type=float, default=global_config.COMMTIMEOUT,
                        help="Pyro timeout in seconds (the COMMTIMEOUT setting, default: %(default)s)")
    parser.add_argument("--nshost", help="host (or ./u:socket) of the name server (default: Pyro4's search)")
    parser.add_argument("--nsport", type=int, help="port of the name server (default: NS_PORT)")
    return parser


def _keys(parser: argparse.ArgumentParser, options: argparse.Namespace) -> tuple[str | None, str | None]:
    if options.pyrokey or options.gatewaykey:
        sys.stderr.write("Warning: using -k and/or -g to supply keys on the command line is a security problem and "
                         "is deprecated; set PYRO_HMAC_KEY and " + GATEWAY_KEY_ENV + " instead\n")
    pyrokey, gatewaykey = options.pyrokey, options.gatewaykey
    if "PYRO_HMAC_KEY" in os.environ:
        if pyrokey:
            parser.error("don't use -k and PYRO_HMAC_KEY at the same time")
        pyrokey = os.environ["PYRO_HMAC_KEY"]
    if GATEWAY_KEY_ENV in os.environ:
        if gatewaykey:
            parser.error(f"don't use -g and {GATEWAY_KEY_ENV} at the same time")
        gatewaykey = os.environ[GATEWAY_KEY_ENV]
    return pyrokey or None, gatewaykey or None


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(args: list[str] | None = None) -> int:
    """Entry point of ``pyroplug-httpgateway``; returns the exit code."""
    parser = make_parser()
    options = parser.parse_args(args)
    pyrokey, gatewaykey = _keys(parser, options)
    try:
        app = HttpGateway(options.expose, pyrokey, gatewaykey, options.timeout, options.nshost, options.nsport)
    except re.error as exc:
        parser.error(f"invalid expose regex: {exc}")
    if app.ns_regex:
        print(f"Exposing objects with names matching: {app.ns_regex}")
    else:
        print("Warning: exposing all objects (no expose regex set)")
    if not gatewaykey:
        print("Warning: no gateway key set: anyone who can reach the gateway can call the exposed objects")
    try:  # connect to the name server early, like Pyro4 (the gateway retries on every request anyway)
        ns_uri = app._with_nameserver(lambda ns: ns._pyroUri)
    except errors.PyroError:
        print("Not yet connected to a name server.")
    else:
        print(f"Connected to name server at: {ns_uri}")
    try:
        server = make_gateway_server(options.host, options.port, app)
    except OSError as exc:
        app.close()
        return error(exc, "Error: cannot start the HTTP gateway")
    host, port = server.socket.getsockname()[:2]
    print(f"Pyro HTTP gateway running on http://{host}:{port}/pyro/", flush=True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
