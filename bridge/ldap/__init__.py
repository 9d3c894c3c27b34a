"""LDAP for the gateway: one small client interface, two implementations.

`client.py` is the contract the authenticator and account source use;
`aio.py` speaks LDAP on the event loop itself (persistent pooled
connections, no threads), `threaded.py` runs ldap3 in a thread pool.
`errors.py` maps LDAP failures to the gateway's error classes for both users.
"""
