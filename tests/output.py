"""What a command run inside the test's own process printed to stderr, less what Ray put there.

Once a test worker has started Ray (one per session, `ray_session`), Ray's log monitor prints
into that process's stderr whenever its raylet or an idle actor logs: "(raylet) ... is over 95%
full" on a nearly full disk (it failed a CI run), "(visual_prompt pid=6426) ..." at an actor's
exit. Those lines are Ray's, printed at any moment, not the command's."""
from __future__ import annotations

import re

RAY_FORWARDED = re.compile(r"^(\x1b\[[\d;]*m)?\((raylet|gcs_server|autoscaler|monitor|[\w.-]+ pid=\d+)[,)]")


def command_err(capsys) -> str:
    """The captured stderr since the last read, without the lines Ray forwarded into it."""
    return "".join(line for line in capsys.readouterr().err.splitlines(keepends=True)
                   if not RAY_FORWARDED.match(line))
