"""Command line of the fleet simulator: `python -m fleetsim serve|compare|images`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from fleetsim.compare import (
    DEFAULT_FLEET as COMPARE_FLEET,
)
from fleetsim.compare import (
    POLICY_NAMES,
    CompareOptions,
    format_table,
    run_comparison,
)
from fleetsim.emulator import (
    DEFAULT_COMPRESSION,
    DEFAULT_FLEET,
    DEFAULT_STARTUP_DELAY_S,
    Emulator,
    EmulatorError,
)
from fleetsim.plots import (
    BrowserNotFoundError,
    ImageExportError,
    OutputFolderError,
    check_result,
    find_browser,
    prepare_output_folder,
    select_policies,
    write_atomically,
    write_images,
    write_plots,
)
from fleetsim.trace import TRACE_FILES, TraceError

logger = logging.getLogger("fleetsim")
# Loggers of kaleido and choreographer, which log every tab and temporary
# directory at INFO.
BROWSER_LOGGERS = ("kaleido", "choreographer", "browser_proc")


def non_empty_path(text: str) -> Path:
    """Convert an argument to a Path, rejecting the empty string.

    `Path("")` is `Path(".")`, so without this check an empty argument would
    silently name the current folder.
    """
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    return Path(text)


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
        type=non_empty_path,
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
        type=non_empty_path,
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
    add_compare_parser(commands)
    add_images_parser(commands)
    return parser


def add_compare_parser(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="run scaling policies on one trace and fleet, side by side",
        description=(
            "Simulate each policy on the same scaled trace and fleet; print a table "
            "and write the results as JSON."
        ),
    )
    compare.add_argument(
        "--trace", required=True, help=f"trace name: {', '.join(TRACE_FILES)}"
    )
    compare.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="load factor X: X times the trace's request rate (default 1)",
    )
    compare.add_argument(
        "--scale-mode",
        default="superpose",
        help=(
            "compress: arrival times / X; superpose: X time-shifted copies over the "
            "same duration (default superpose)"
        ),
    )
    compare.add_argument(
        "--fleet",
        type=non_empty_path,
        default=COMPARE_FLEET,
        help="fleet file (default data/compare_fleet.json)",
    )
    compare.add_argument(
        "--policies",
        default=",".join(POLICY_NAMES),
        help=(
            "comma-separated NAME[=TARGET][@ACCELERATOR], e.g. hpa-kv=0.5 or "
            f"wva@H100-80GB; names: {', '.join(POLICY_NAMES)} (default all)"
        ),
    )
    compare.add_argument(
        "--seed", type=int, default=1, help="seed of the load scaling, classes, names"
    )
    compare.add_argument(
        "--duration",
        type=float,
        default=None,
        help="simulated seconds of the trace to replay (default: all of it)",
    )
    compare.add_argument(
        "--startup-delay",
        type=float,
        default=120.0,
        help="seconds from scheduling a new pod to Ready (default 120)",
    )
    compare.add_argument(
        "--json", type=non_empty_path, help="write the results to this file"
    )
    compare.add_argument(
        "--plots", type=non_empty_path, help="write plotly HTML plots here"
    )
    compare.add_argument(
        "--images",
        type=non_empty_path,
        metavar="DIR",
        help="write the plots as PNG files here (needs Chrome or Chromium)",
    )
    compare.add_argument(
        "--markdown", action="store_true", help="print the table as Markdown"
    )


def add_images_parser(commands: Any) -> None:
    images = commands.add_parser(
        "images",
        help="render the plots of a `compare --json` file as PNG files",
        description=(
            "Write replicas.png, load.png, kv_usage.png and failures.png into DIR "
            "from a RESULT file that `compare --json` wrote. Needs Chrome or Chromium: "
            "BROWSER_PATH, else /usr/bin/chromium."
        ),
    )
    images.add_argument(
        "result",
        type=non_empty_path,
        metavar="RESULT",
        help="JSON file written by compare --json",
    )
    images.add_argument(
        "directory",
        type=non_empty_path,
        metavar="DIR",
        help="directory for the PNG files",
    )
    images.add_argument(
        "--policies",
        help=(
            "comma-separated policy names as keys in the JSON, e.g. hpa-queue=1,wva; "
            "selects and orders the panels (default: all, in the file's order)"
        ),
    )


def load_result(path: Path, names: list[str] | None = None) -> dict[str, Any]:
    """Read and check a `compare --json` file, raising ValueError naming it.

    Only the series of the policies in `names` (default: all) are checked.
    """
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(
            f"result file {path} not found; write one with "
            "`python -m fleetsim compare --json FILE`"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot read result file {path}: {exc}") from exc
    try:
        result = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"result file {path} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ValueError(
            f"result file {path} is nested too deeply to read: {exc}"
        ) from exc
    try:
        check_result(result, names)
    except ValueError as exc:
        raise ValueError(f"result file {path}: {exc}") from exc
    return result


def images_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run `images`.

    Bad input, a missing browser or an output folder that cannot be created
    or written exits 2. A failed render or a failed write exits 1.
    """
    prefix = "python -m fleetsim images: error:"
    names = None
    if args.policies is not None:
        names = [name.strip() for name in args.policies.split(",") if name.strip()]
    try:
        result = load_result(args.result, names)
        if names is not None:
            result = select_policies(result, names)
        # Check an existing DIR before the browser starts. A missing one is
        # created only after rendering, so a failed render leaves no folder.
        prepare_output_folder(args.directory, create=False)
        paths = write_images(result, args.directory)
    except OutputFolderError as exc:
        parser.exit(2, f"{prefix} DIR: {exc}\n")
    except (ValueError, BrowserNotFoundError) as exc:
        parser.exit(2, f"{prefix} {exc}\n")
    except (ImageExportError, OSError) as exc:
        parser.exit(1, f"{prefix} {exc}\n")
    for path in paths:
        print(f"wrote {path}")
    return 0


def compare_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run `compare`; invalid options exit 2 with a message naming the value."""
    options = CompareOptions(
        trace=args.trace,
        scale=args.scale,
        scale_mode=args.scale_mode,
        fleet=args.fleet,
        policies=tuple(p.strip() for p in args.policies.split(",") if p.strip()),
        seed=args.seed,
        duration_s=args.duration,
        startup_delay_s=args.startup_delay,
    )
    prefix = "python -m fleetsim compare: error:"
    try:
        options.validate()
        # Look for the browser first, because the run can take minutes.
        browser = find_browser() if args.images is not None else None
    except (ValueError, BrowserNotFoundError) as exc:
        parser.exit(2, f"{prefix} {exc}\n")
    if args.json is not None and args.json.is_dir():
        parser.exit(2, f"{prefix} --json: {args.json} is a folder, not a file\n")
    # Create each output folder and a probe file in it now, so that a run of
    # minutes is not lost to a missing or read-only folder at the end.
    outputs = {
        "--json": args.json.parent if args.json is not None else None,
        "--plots": args.plots,
        "--images": args.images,
    }
    for option, folder in outputs.items():
        if folder is None:
            continue
        try:
            prepare_output_folder(folder)
        except OutputFolderError as exc:
            parser.exit(2, f"{prefix} {option}: {exc}\n")
    bar = None
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(
            total=1000,
            file=sys.stderr,
            leave=False,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
        )

        def progress(fraction: float, message: str) -> None:
            assert bar is not None
            bar.set_description(message)
            bar.n = int(fraction * 1000)
            bar.refresh()

    try:
        result = run_comparison(options, progress)
    except (TraceError, ValueError, OSError) as exc:
        parser.exit(2, f"{prefix} {exc}\n")
    finally:
        if bar is not None:
            bar.close()
    print(format_table(result, markdown=args.markdown))
    if args.json is not None:
        document = json.dumps(result, indent=1) + "\n"
        try:
            write_atomically(args.json, document.encode())
        except OSError as exc:
            parser.exit(1, f"{prefix} --json: {exc}\n")
        print(f"wrote {args.json}")
    if args.plots is not None:
        try:
            paths = write_plots(result, args.plots)
        except OSError as exc:
            parser.exit(1, f"{prefix} --plots: {exc}\n")
        for path in paths:
            print(f"wrote {path}")
    if args.images is not None:
        try:
            paths = write_images(result, args.images, browser)
        except (ImageExportError, OSError) as exc:
            parser.exit(1, f"{prefix} --images: {exc}\n")
        for path in paths:
            print(f"wrote {path}")
    return 0


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
    for name in BROWSER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "images":
        return images_command(args, parser)
    if args.command == "compare":
        # One line per replica removed while busy is noise in a comparison;
        # the losses are counted in the results.
        logging.getLogger("fleetsim.engine").setLevel(logging.WARNING)
        return compare_command(args, parser)
    try:
        return serve(args)
    except (EmulatorError, TraceError, ValueError, OSError) as exc:
        logger.error("fleetsim: %s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
