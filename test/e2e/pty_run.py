"""Run a command on a fresh pseudo-terminal, as if a person sat at it: once PROMPT appears on
the terminal, type KEYS and Enter. Prints, as JSON on stdout, everything the terminal showed
(the command's output and whatever the terminal echoed of the typing), whether the keys were
typed, and the exit code.

usage: python3 pty_run.py PROMPT KEYS COMMAND [ARG...]
"""
import json
import os
import pty
import select
import signal
import sys

# A guard against a hung command only.
GIVE_UP_SECONDS = 60


def main() -> None:
    prompt, keys, *command = sys.argv[1:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp(command[0], command)
    shown = b""
    typed = False
    while True:
        ready, _, _ = select.select([fd], [], [], GIVE_UP_SECONDS)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: every process holding the terminal has gone
            break
        if not chunk:
            break
        shown += chunk
        if not typed and prompt.encode() in shown:
            os.write(fd, keys.encode() + b"\r")
            typed = True
    _, status = os.waitpid(pid, 0)
    json.dump({"shown": shown.decode("utf-8", "replace"), "typed": typed, "code": os.waitstatus_to_exitcode(status)}, sys.stdout)


main()
