"""Lambda-like sandboxes for handler workers: each function's invocations run in a process of
their own, on the runtime's Python, with Lambda's file system, environment and limits."""
