"""What one log line costs: the message lines of UJUMBE_LOG_MESSAGES=on.

    .venv/bin/python bench/log_lines.py

Writes 100,000 lines through ujumbe.logs.message_event to /dev/null, as JSON
and plain, then with the logger off (what every hot path pays when the lines
are off), and prints CPU µs per line. Ceiling, same run: a bare
``isEnabledFor`` check. bench/RESULTS.md, "Message lines".
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ujumbe import logs  # noqa: E402

N = 100_000


def per_line(fn: object) -> float:
    started = time.process_time()
    for i in range(N):
        fn(i)  # type: ignore[operator]
    return (time.process_time() - started) / N * 1e6


def main() -> None:
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)

    def line(i: int) -> None:
        logs.message_event(i, "submitted", f"on smsc1 as {i:x} (attempt 1)", connector="smsc1",
                           operator_ids=f"{i:x}", attempts=1)

    for name, fmt in (("json", logs.JsonFormatter()), ("plain", logs.PlainFormatter(logs.PLAIN))):
        handler.setFormatter(fmt)
        logs.messages.setLevel(logging.DEBUG)
        print(f"{name:6} line written   {per_line(line):6.2f} us")
    logs.messages.setLevel(logging.NOTSET)  # off: the root is at INFO
    print(f"lines off (a call)     {per_line(line):6.2f} us")
    print(f"ceiling: isEnabledFor  {per_line(lambda i: logs.tracing()):6.2f} us")


if __name__ == "__main__":
    main()
