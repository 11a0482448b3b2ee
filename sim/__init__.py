"""dorc's local AWS simulator: Lambda's Python runtime emulated, moto with a persisted store,
offline fixtures, and dorc's side of LocalStack.

The source folder is ``sim/``; it installs as ``dorc_sim`` so that it cannot collide with any
other distribution's top-level ``sim`` module."""

if __name__ != "dorc_sim":  # e.g. ``import sim`` from the checkout's root, where ./sim is on sys.path
    raise ImportError(f"dorc's simulator is imported as 'dorc_sim', not {__name__!r}")
