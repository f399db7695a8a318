"""Authorization without a web framework: SMART scopes, the patient compartment, token
verification, the service's signing keys, registered clients and the built-in token server.

Storage goes through the small Protocols in keys.py, clients.py and jti_store.py; the in-memory
implementations there serve the tests and single-process tools.
"""
