"""servers.rst, "Integrating Pyro in your own event loop": ``daemon.sockets`` and ``daemon.events()``.

Your own select() loop waits on the daemon's sockets (together with any of your own) and hands the
ready ones to ``daemon.events``; between events it does its own work. Works with either server type
(PYRO_SERVERTYPE=thread|multiplex). A remote ``stop()`` ends the loop. Run ``stop_client.py URI``.
"""

import select

import pyroplug as Pyro4

running = True


@Pyro4.expose
class Service(object):
    def method(self, arg):
        return arg*2

    def stop(self):
        global running
        running = False


daemon = Pyro4.Daemon(host="127.0.0.1")
uri = daemon.register(Service)
print(uri)
print("server type:", Pyro4.config.SERVERTYPE)
handled = idle = 0
while running:
    sockets = daemon.sockets               # they change as clients come and go (multiplex)
    ready, _, _ = select.select(sockets, [], [], 0.1)
    events = [s for s in ready if s in sockets]
    if events:
        daemon.events(events)
        handled += 1
    else:
        idle += 1                          # ... your own work goes here ...
print(f"own event loop ended: handled daemon events {handled} times, did its own work {idle} times")
daemon.close()
