"""``python -m dorc_sim.awsserver --state DIR [--idle-minutes N]``: see ``server``."""

from .server import main

main()
