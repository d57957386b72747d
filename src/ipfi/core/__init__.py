"""The sans-I/O protocol core: frames, handshake, the protocol pieces, codecs, interface, limits,
events and errors. Nothing here does I/O or imports asyncio, socket, threading, selectors or fcntl
(tests/test_layers.py checks)."""
