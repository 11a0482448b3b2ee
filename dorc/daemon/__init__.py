"""The warm path: ``dorc daemon start`` keeps one process per user and dorc installation that has
imported what a local run imports; ``dorc run``/``dorc invoke`` (local target) hand their command
line to it, and it forks a child that runs exactly that command, so a run skips the interpreter's
start-up and half a second of imports. Every run is still a fresh process (a fork), reading the
config repo anew; nothing of one run reaches another.

    paths      where it lives (a 0700 folder: its socket, its record, its log)
    digest     what it loaded, cheaply (stat calls): a changed dorc is never run by an old daemon
    protocol   one request, its answers
    client     the ``dorc`` executable's side (standard library only: it runs before anything heavy)
    server     the daemon process
    sandboxes  its fork servers: a sandbox per function, forked with the AWS SDK imported already
    botodata   botocore's data parsed once for the runs' own clients of the local AWS server
    control    start, stop, status

Nothing is imported here: the client must stay cheap.
"""
