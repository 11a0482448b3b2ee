"""dorc's side of LocalStack: the Lambda worker (``worker.py``, run by dorc's own Python) and the
executor plugin (``plugin/``, a tiny distribution installed into LocalStack's Python 3.13 venv)."""
