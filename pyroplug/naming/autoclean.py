"""AutoCleaner: removes name-server registrations whose server has been unreachable for a while."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from pyroplug.core.config import config as global_config
from pyroplug.core.constants import DAEMON_NAME, NAMESERVER_NAME
from pyroplug.core.errors import PyroError
from pyroplug.core.registry import get_registry
from pyroplug.core.uri import URI

if TYPE_CHECKING:
    from pyroplug.core.config import Config
    from pyroplug.naming.nameserver import NameServer

__all__ = ["AutoCleaner"]

log = logging.getLogger(__name__)


class AutoCleaner(threading.Thread):
    """Every ``interval`` (NS_AUTOCLEAN) seconds, connect to each registered PYRO URI's location.

    A name whose location has refused connections for ``max_unreachable_time`` seconds is removed,
    unless it was re-registered for another URI meanwhile. Only the transport connect is tried (no
    Pyro handshake); PYRONAME/PYROMETA registrations and unknown transports are left alone.
    """

    #: the smallest interval accepted (seconds)
    min_autoclean_value = 3.0
    #: how long a name must stay unreachable before it is removed (seconds)
    max_unreachable_time = 20.0
    #: how often the thread wakes up to see whether a round is due (seconds)
    loop_delay = 2.0
    #: tests may lower the interval below min_autoclean_value
    override_autoclean_min = False

    def __init__(self, nameserver: NameServer, interval: float | None = None, *, config: Config | None = None) -> None:
        cfg = config or global_config
        if interval is None:
            interval = cfg.NS_AUTOCLEAN
        if not interval or interval <= 0:
            raise ValueError("NS_AUTOCLEAN must be positive to run the autocleaner")
        if not self.override_autoclean_min and interval < self.min_autoclean_value:
            raise ValueError(f"NS_AUTOCLEAN cannot be smaller than {self.min_autoclean_value:g}")
        super().__init__(name="pyroplug-ns-autoclean", daemon=True)
        self.nameserver = nameserver
        self.interval = float(interval)
        self.config = cfg
        #: name -> time.monotonic() of the first failed probe
        self.unreachable: dict[str, float] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
        last = time.monotonic()
        while not self._stopping.wait(self.loop_delay):
            if time.monotonic() - last < self.interval:
                continue
            try:
                self.clean_once()
            except Exception:  # a storage hiccup must not end the cleaner
                log.exception("autoclean round failed")
            last = time.monotonic()

    def probe(self, uri_text: str) -> bool:
        """True when a connection to the URI's location can be made (or the URI cannot be probed)."""
        try:
            uri = URI(uri_text)
            if uri.protocol != "PYRO":
                return True
            transport = get_registry().transport_for(uri.location_kind)(self.config)
        except PyroError:
            return True
        try:
            conn = transport.connect(uri, self.config.COMMTIMEOUT or 5.0)
        except (PyroError, OSError):
            return False
        conn.close()
        return True

    def clean_once(self) -> list[str]:
        """Probe every registration once; returns the names removed in this round."""
        removed: list[str] = []
        now = time.monotonic()
        listing = self.nameserver.list()
        for name, uri in listing.items():
            if name in (DAEMON_NAME, NAMESERVER_NAME):
                continue
            if self.probe(uri):
                self.unreachable.pop(name, None)
                continue
            since = self.unreachable.setdefault(name, now)
            if now - since >= self.max_unreachable_time and self._remove_if_unchanged(name, uri):
                log.info("autoclean: removed %s; %s unreachable for %.0f s", name, uri, now - since)
                removed.append(name)
                del self.unreachable[name]
        for name in [n for n in self.unreachable if n not in listing]:
            del self.unreachable[name]
        if self.unreachable:
            log.debug("autoclean: %d/%d names currently unreachable", len(self.unreachable), len(listing))
        return removed

    def _remove_if_unchanged(self, name: str, uri: str) -> bool:
        ns = self.nameserver
        with ns.lock:
            try:
                current, _meta = ns.storage[name]
            except KeyError:
                return False
            if current != uri:
                return False
            return ns.remove(name) == 1

    def close(self) -> None:
        """Stop the thread and wait for it."""
        self._stopping.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(10)
