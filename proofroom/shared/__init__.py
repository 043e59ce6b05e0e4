"""The contract between the Proofroom server and its clients.

Definitions only: no I/O and no third-party imports, so that every client (and the
JSON file the browser client is built from) shares one source of truth.
"""
