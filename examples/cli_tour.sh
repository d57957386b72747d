#!/usr/bin/env bash
# The ipfi command line in a few steps: serve an interface, call it, look at it, send frames.
#     bash examples/cli_tour.sh        (run from the repository: it serves examples/typed.py)
set -euo pipefail
export IPFI_RUNDIR="$(mktemp -d)"  # named services live here (private to this run)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$IPFI_RUNDIR"' EXIT

ipfi serve examples.typed:iface service:geometry &     # serve an ipfi.Interface from a module
ipfi echo service:echo --timeout 30s &                 # an ipcprims-style echo server
ipfi info service:geometry --format json > /dev/null   # (waits until the service answers)

ipfi call service:geometry midpoint '{"x": 0, "y": 0}' '{"x": 2, "y": 4}'
ipfi call service:geometry path '{"x": 0, "y": 1}' 2   # a stream: one JSON line per item
ipfi info service:geometry --format json | python -c 'import json, sys; print([p["name"] for p in json.load(sys.stdin)["procedures"]])'
ipfi stubs service:geometry | grep "async def midpoint"
ipfi info service:echo --format json > /dev/null
ipfi send service:echo --channel 256 --data "hello" --wait --format raw
echo
