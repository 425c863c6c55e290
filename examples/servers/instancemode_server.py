"""servers.rst, "Instance modes and Instance creation".

The chapter's percall MyPyroThing (instance mode via ``@Pyro4.expose(instance_mode=...)``), next to
classes using ``@Pyro4.behavior(...)`` for the session and single modes and one with an
``instance_creator``. Every class counts the calls on its instance. Publishes them on 127.0.0.1 with
readable object ids and prints their URIs; run ``instancemode_client.py URI URI URI URI``.
"""

import itertools

import pyroplug as Pyro4

_instances = itertools.count(1)


class Counter(object):
    def __init__(self):
        self.instance = next(_instances)
        self.calls = 0

    @Pyro4.expose
    def count(self):
        self.calls += 1
        return self.calls


@Pyro4.expose(instance_mode="percall")
class MyPyroThing(Counter):
    # ... methods that can be called go here...
    pass


@Pyro4.behavior(instance_mode="session")
class SessionThing(Counter):
    pass


@Pyro4.behavior(instance_mode="single")
class SingleThing(Counter):
    pass


def create_thing(clazz):
    thing = clazz()
    thing.calls = 1000   # special initialization the default constructor call can't do
    return thing


@Pyro4.expose(instance_mode="single", instance_creator=create_thing)
class CreatedThing(Counter):
    pass


daemon = Pyro4.Daemon(host="127.0.0.1")
for name, clazz in [("percall", MyPyroThing), ("session", SessionThing), ("single", SingleThing),
                    ("created", CreatedThing)]:
    uri = daemon.register(clazz, "example." + name)
    print(uri)
daemon.requestLoop()
