"""Launch Ujumbe for a benchmark: ``ujumbe serve`` with an SMPP connector to
the SMSC simulator instead of the built-in simulator.

    python bench/_server.py --port 8080 --role all --smpp-port 2775 [--binds 1] [--window 64]

Settings come from the environment like ``ujumbe serve`` (UJUMBE_DATA_DIR,
UJUMBE_DATABASE_URL, ...). The connector is built in code here so the
benchmark does not depend on how connectors are provisioned; uvicorn runs with
the same options as ``ujumbe serve``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ujumbe.channels.smpp.client import SmppConnector
from ujumbe.config import Settings
from ujumbe.runtime import Platform


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--role", choices=("all", "api", "worker"), default="all")
    ap.add_argument("--smpp-port", type=int, default=None, help="SMSC simulator port (default: built-in simulator)")
    ap.add_argument("--binds", type=int, default=1)
    ap.add_argument("--window", type=int, default=64)
    args = ap.parse_args()
    logging.basicConfig(level=os.environ.get("UJUMBE_LOG_LEVEL", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    settings.port, settings.role = args.port, args.role
    channels = []
    if args.smpp_port:
        channels.append(SmppConnector("127.0.0.1", args.smpp_port, "bench", "bench", binds=args.binds,
                                      window=args.window, name="smsc"))
    platform = Platform(settings, channels=channels)
    if args.role == "worker":
        from ujumbe.cli import run_worker

        run_worker(platform)
        return
    import uvicorn

    from ujumbe.http.app import create_app

    uvicorn.run(create_app(platform, role=args.role), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False, loop="auto", http="auto")


if __name__ == "__main__":
    main()
