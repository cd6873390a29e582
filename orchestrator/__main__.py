import os
import signal
import sys

from orchestrator.commands.cli import main

code = main()
if code == 130:
    # interrupted: one more Ctrl-C while Ray shuts down ends the process at once, quietly
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
sys.exit(code)
