"""The objects the demo server hosts (plain classes: with REQUIRE_EXPOSE off, public methods are remote)."""

from __future__ import annotations

import threading
import time

import pyroplug as Pyro4


class Calculator:
    """A calculator with a oneway method, a property, a generator and a method that fails."""

    def __init__(self) -> None:
        self._memory = 0
        self._seen = 0
        self._lock = threading.Lock()

    def add(self, a, b):
        return a + b

    def echo(self, value):
        return value

    def divide(self, a, b):
        return a / b

    @Pyro4.oneway
    def remember_slowly(self, value):
        time.sleep(0.5)
        with self._lock:
            self._memory = value
            self._seen += 1

    def seen(self):
        return self._seen

    @property
    def memory(self):
        return self._memory

    @memory.setter
    def memory(self, value):
        self._memory = value

    def countdown(self, start):
        yield from range(start, 0, -1)

    def new_account(self, owner):
        """Create, register and return a new object: the client receives a proxy (autoproxy)."""
        account = Account(owner)
        self._pyroDaemon.register(account)
        return account


class Account:
    """An object created on demand by the calculator."""

    def __init__(self, owner):
        self.owner = owner
        self.balance = 0

    def deposit(self, amount):
        self.balance += amount
        return f"{self.owner} now has {self.balance}"


@Pyro4.behavior(instance_mode="single")
class SingleCounter:
    def __init__(self):
        self.count = 0

    def increment(self):
        self.count += 1
        return self.count


@Pyro4.behavior(instance_mode="session")
class SessionCounter(SingleCounter):
    pass


@Pyro4.expose(instance_mode="percall")
class PerCallCounter(SingleCounter):
    pass
