"""Command line of the fleet simulator: `python -m fleetsim serve ...`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from fleetsim.emulator import (
    DEFAULT_COMPRESSION,
    DEFAULT_FLEET,
    DEFAULT_STARTUP_DELAY_S,
    Emulator,
    EmulatorError,
)
from fleetsim.trace import TraceError

logger = logging.getLogger("fleetsim")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fleetsim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the emulated cluster (Kubernetes API subset and pod metrics)",
        description=(
            "Serve the emulated GPU cluster on loopback. Writes <state-dir>/kubeconfig "
            "and <state-dir>/emulator.json (port and pid)."
        ),
    )
    serve.add_argument(
        "--state-dir",
        type=Path,
        required=True,
        help="directory for kubeconfig and emulator.json",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="loopback address to bind (default 127.0.0.1)",
    )
    serve.add_argument(
        "--port", type=int, default=0, help="TCP port; 0 picks a free one (default 0)"
    )
    serve.add_argument(
        "--fleet",
        type=Path,
        default=DEFAULT_FLEET,
        help="fleet file (default data/demo_fleet.json)",
    )
    serve.add_argument(
        "--compression",
        type=float,
        default=DEFAULT_COMPRESSION,
        help=(
            "divide trace arrival times by this factor; the trace loops when it ends "
            f"(default {DEFAULT_COMPRESSION})"
        ),
    )
    serve.add_argument(
        "--startup-delay",
        type=float,
        default=DEFAULT_STARTUP_DELAY_S,
        help=(
            "seconds from scheduling a new pod to Ready "
            f"(default {DEFAULT_STARTUP_DELAY_S})"
        ),
    )
    serve.add_argument(
        "--seed", type=int, default=1, help="seed for pod names and UIDs (default 1)"
    )
    serve.add_argument(
        "--clock",
        choices=("real", "manual"),
        default="real",
        help=(
            "real: simulated time follows wall time; manual: time moves only on "
            "POST /emulator/advance (default real)"
        ),
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    emulator = Emulator(
        args.fleet,
        args.state_dir,
        host=args.host,
        port=args.port,
        clock=args.clock,
        compression=args.compression,
        startup_delay_s=args.startup_delay,
        seed=args.seed,
    )
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    emulator.start()
    while not stop.wait(0.5):
        pass
    emulator.stop()
    logger.info(
        "fleetsim emulator stopped at simulated time %.1f s", emulator.cluster.now
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    args = build_parser().parse_args(argv)
    try:
        return serve(args)
    except (EmulatorError, TraceError, ValueError, OSError) as exc:
        logger.error("fleetsim: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
