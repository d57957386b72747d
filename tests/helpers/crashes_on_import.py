"""A module that cannot be imported: what ipfi serve does with it is an internal failure (exit 125)."""

raise RuntimeError("this module fails as it is imported")
