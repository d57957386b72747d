"""``python -m ipfi``: the command line."""

from ipfi.cli import main

raise SystemExit(main())
