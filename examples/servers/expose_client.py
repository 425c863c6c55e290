"""Client for expose_server.py: ``python expose_client.py URI``.

Shows the exposed members, uses the exposed method and the writable remote attribute, and shows
that the proxy and the daemon itself refuse everything that is private or not decorated.
"""

import sys

import pyroplug as Pyro4

service = Pyro4.Proxy(sys.argv[1])
service._pyroBind()
print("exposed methods:", sorted(service._pyroMethods))
print("exposed attributes:", sorted(service._pyroAttrs))
print("get_value() =", service.get_value())
print("attr =", service.attr)
service.attr = 99
print("after 'service.attr = 99': get_value() =", service.get_value())

for name in ["value", "_private", "__private", "__dunder__"]:
    try:
        getattr(service, name)
        print(name, "is reachable")
    except AttributeError:
        print(name, "refused by the proxy")
    try:
        service._pyroInvoke(name, (), {})   # bypass the proxy: ask the daemon directly
        print(name, "is callable")
    except AttributeError as x:
        print(name, "refused by the daemon:", x)
service._pyroRelease()
