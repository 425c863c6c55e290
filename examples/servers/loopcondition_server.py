"""servers.rst, "Running the request loop": ``requestLoop(loopCondition)``, left cleanly from your code.

The loop checks loopCondition about every POLLTIMEOUT seconds (Pyro4 and pyroplug, both server
types), so it is set short here. A remote ``stop()`` makes the condition False; the script then
cleans up and ends. Run ``stop_client.py URI``.
"""

import pyroplug as Pyro4

Pyro4.config.POLLTIMEOUT = 0.2
keep_running = True


@Pyro4.expose
class Service(object):
    def method(self, arg):
        return arg*2

    def stop(self):
        global keep_running
        keep_running = False


daemon = Pyro4.Daemon(host="127.0.0.1")
uri = daemon.register(Service)
print(uri)
daemon.requestLoop(loopCondition=lambda: keep_running)
print("request loop ended: loopCondition returned False")
daemon.close()
print("daemon closed")
