"""The local AWS server: moto in server mode, in a process of its own, shared by every local run
of one config repo (and their sandboxes and tests), with S3 written through to disk.

    store     the folder format of the S3 store, its check and repair (stdlib)
    control   dorc's side: start on demand (race-free), find, stop, status (stdlib)
    server    the process itself (``python -m dorc_sim.awsserver --state DIR``; moto)
"""
