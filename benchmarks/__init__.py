"""ipfi's benchmark against gRPC, ZeroMQ, multiprocessing.connection and the raw-socket floors.

Run ``python -m benchmarks`` (see ``--help``); peers install with ``pip install -e '.[bench]'``.
"""
