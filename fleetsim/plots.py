"""Plotly figures of a `compare` result, as HTML or PNG files.

`write_plots(result, directory)` writes `replicas.html` (replicas holding
a GPU, per variant, one panel per policy), `load.html` (arrival rate),
`kv_usage.html` (mean KV-cache usage of ready replicas, per variant and
policy) and `failures.html` (failed requests so far, per policy). Time is
seconds from the end of the warm-up. The HTML files load plotly.min.js,
written beside them, so they open without network access.

`write_images(result, directory)` writes the same four figures as PNG
files. kaleido renders them in a headless Chrome or Chromium that must be
installed: `BROWSER_PATH`, or Debian's `/usr/bin/chromium`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import reprlib
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

# Environment variable with the path of the browser. choreographer 1.4 reads it
# in its own search too.
BROWSER_PATH_ENV = "BROWSER_PATH"
# Debian's chromium package installs its launcher here.
DEFAULT_BROWSER = Path("/usr/bin/chromium")
# Time limit for rendering one figure, in seconds (kaleido 1.5's default).
RENDER_TIMEOUT_S = 90
# PNG size in pixels, chosen to read well at the width of a Markdown page.
IMAGE_WIDTH_PX = 1000
IMAGE_HEIGHT_PX = 500
# Height of one policy panel, and the extra height for the title and time axis.
PANEL_HEIGHT_PX = 220
PANELS_MARGIN_PX = 160
# Series that each drawn policy must contain. The `replicas:*` and `kv:*` series
# are optional and drawn for whichever variants they name.
REQUIRED_SERIES = ("t", "arrival_rps", "failures")
# Flags that stop Chromium's background lookups of Google and search engine
# hosts (sign-in, component updates, preconnects) and make every host name
# unresolvable. Rendering needs no network, because kaleido loads plotly.js
# from the plotly package and MathJax is off.
# NOTE: Chromium 156 still connects a UDP socket to 2001:4860:4860::8888 to
# probe IPv6 reachability. strace showed that it sends no datagram.
OFFLINE_CHROMIUM_FLAGS = (
    "--disable-background-networking",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-pings",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


class ImageExportError(RuntimeError):
    """Failure of the browser to start or to render a figure."""


class BrowserNotFoundError(ImageExportError):
    """No Chrome or Chromium executable at the configured path."""


class OutputFolderError(OSError):
    """Output folder that is a file, cannot be created or cannot be written."""


def prepare_output_folder(folder: Path, create: bool = True) -> None:
    """Create `folder` and check that a file can be created and removed in it.

    With `create` false, a missing folder is left missing and only its
    ancestors are checked. Raises OutputFolderError naming the folder when it
    or an ancestor is a file, or when creating the folder or the probe file
    fails.
    """
    folder = Path(folder)
    for path in (folder, *folder.parents):
        try:
            exists = path.exists()
            is_folder = path.is_dir()
        except OSError as exc:
            # Python 3.11's Path.exists() raises PermissionError, instead of
            # returning False, when the process may not search a parent folder.
            raise OutputFolderError(f"cannot check folder {path}: {exc}") from exc
        if exists:
            if not is_folder:
                raise OutputFolderError(f"{path} is a file, not a folder")
            break
    if not folder.exists():
        if not create:
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputFolderError(f"cannot create folder {folder}: {exc}") from exc
    probe = folder / f".fleetsim-probe-{secrets.token_hex(4)}"
    try:
        probe.open("xb").close()
        probe.unlink()
    except OSError as exc:
        raise OutputFolderError(f"cannot write to folder {folder}: {exc}") from exc


def _value_text(value: Any) -> str:
    """Format a JSON value for a message.

    Long strings, arrays and objects are shortened. Other values keep their
    JSON spelling (`null`, `true`, `0.5`).
    """
    if isinstance(value, (str, list, dict)):
        return reprlib.repr(value)
    return json.dumps(value, default=str)


def _header_text(value: Any) -> str:
    """Format a header field of the result for a title, showing a string as given."""
    return value if isinstance(value, str) else _value_text(value)


def _variants(series: dict[str, Any], prefix: str) -> list[str]:
    return [key.removeprefix(prefix) for key in series if key.startswith(prefix)]


def _panels(result: dict[str, Any], prefix: str, title: str, y_title: str) -> go.Figure:
    policies = list(result["policies"])
    figure = make_subplots(
        rows=len(policies),
        cols=1,
        shared_xaxes=True,
        subplot_titles=policies,
        vertical_spacing=0.04 if len(policies) > 3 else 0.1,
    )
    # One colour per variant in every panel, so the legend of the first panel
    # is true for all of them.
    palette = qualitative.Plotly
    colours: dict[str, str] = {}
    for row, name in enumerate(policies, start=1):
        series = result["policies"][name]["series"]
        for variant in _variants(series, prefix):
            colour = colours.setdefault(variant, palette[len(colours) % len(palette)])
            figure.add_trace(
                go.Scatter(
                    x=series["t"],
                    y=series[prefix + variant],
                    name=variant,
                    legendgroup=variant,
                    showlegend=row == 1,
                    mode="lines",
                    line={"shape": "hv", "color": colour},
                ),
                row=row,
                col=1,
            )
        figure.update_yaxes(title_text=y_title, row=row, col=1)
    figure.update_xaxes(title_text="time (s)", row=len(policies), col=1)
    figure.update_layout(title=title, height=260 * len(policies) + 120)
    return figure


def _load(result: dict[str, Any]) -> go.Figure:
    first = next(iter(result["policies"].values()))["series"]
    figure = go.Figure(
        go.Scatter(x=first["t"], y=first["arrival_rps"], mode="lines", name="arrivals")
    )
    figure.update_layout(
        title=(
            f"Load: {_header_text(result['trace'])} x{_header_text(result['scale'])} "
            f"({_header_text(result['scale_mode'])}), arrivals per 15 s scrape interval"
        ),
        xaxis_title="time (s)",
        yaxis_title="requests/s",
    )
    return figure


def _failures(result: dict[str, Any]) -> go.Figure:
    figure = go.Figure()
    for name, values in result["policies"].items():
        series = values["series"]
        figure.add_trace(
            go.Scatter(x=series["t"], y=series["failures"], mode="lines", name=name)
        )
    figure.update_layout(
        title="Failed requests so far (rejected, timed out, lost to scale-down)",
        xaxis_title="time (s)",
        yaxis_title="requests",
    )
    return figure


def _figures(result: dict[str, Any]) -> dict[str, go.Figure]:
    """Build the four figures, keyed by file name without suffix."""
    return {
        "replicas": _panels(
            result, "replicas:", "Replicas holding a GPU, per variant", "replicas"
        ),
        "load": _load(result),
        "kv_usage": _panels(
            result, "kv:", "Mean KV-cache usage of ready replicas", "KV usage"
        ),
        "failures": _failures(result),
    }


def write_plots(result: dict[str, Any], directory: Path) -> list[Path]:
    """Write the four HTML figures and plotly.min.js into `directory` (created).

    Returns the paths of the HTML files. Each file is written under a
    temporary name and renamed, so no file is left partly written under its
    final name. plotly.min.js is rewritten every time, so it always matches
    the plotly version that wrote the HTML. Raises OutputFolderError when the
    folder cannot be created or written, and OSError naming the file when a
    write fails.
    """
    from plotly.offline import get_plotlyjs

    directory = Path(directory)
    prepare_output_folder(directory)
    pages = {
        # "directory" makes the page load plotly.min.js from its own folder, so
        # it opens without network access. The bundle is written below, not by
        # plotly.
        directory / f"{name}.html": figure.to_html(include_plotlyjs="directory")
        for name, figure in _figures(result).items()
    }
    write_atomically(directory / "plotly.min.js", get_plotlyjs().encode())
    for path, page in pages.items():
        write_atomically(path, page.encode())
    return list(pages)


def _json_type(value: Any) -> str:
    """Return the JSON type name of a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_series(policy: str, series: dict[str, Any]) -> None:
    """Check that each series is an array of numbers or nulls as long as `t`.

    Raises ValueError naming the series and the first invalid value. NaN and
    infinite values pass, because plotly's JSON encoding (checked with
    plotly 7.1) turns them into null, which plotly.js draws as a gap.
    """
    for key in REQUIRED_SERIES:
        if key not in series:
            raise ValueError(f"policy {policy!r} has no series {key!r}")
    # `t` first, so that its own errors come before any length mismatch.
    keys = ["t", *(key for key in series if key != "t")]
    for key in keys:
        values = series[key]
        if not isinstance(values, list):
            kind = _json_type(values)
            article = "an" if kind == "object" else "a"
            raise ValueError(
                f"policy {policy!r}: series {key!r} must be an array of numbers, "
                f"not {article} {kind} ({_value_text(values)})"
            )
        for index, value in enumerate(values):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(
                    f"policy {policy!r}: series {key!r} has the {_json_type(value)} "
                    f"{_value_text(value)} at index {index}; expected a number or null"
                )
        if len(values) != len(series["t"]):
            raise ValueError(
                f"policy {policy!r}: series {key!r} has {len(values)} values, "
                f"but 't' has {len(series['t'])}"
            )


def check_result(result: Any, names: Iterable[str] | None = None) -> None:
    """Raise ValueError naming the field when `result` cannot be plotted.

    `result` is the document that `run_comparison` returns and that
    `compare --json` writes. The series of the policies in `names` (default: all)
    must be arrays of numbers or nulls as long as their `t`. Names that are
    not in the result are skipped, so that `select_policies` can report them.
    The header fields `trace`, `scale` and `scale_mode` must exist, but any
    JSON value is accepted and shown as given in titles.
    """
    if not isinstance(result, dict):
        raise ValueError(
            f"the result must be a JSON object, not {type(result).__name__}"
        )
    policies = result.get("policies")
    if not isinstance(policies, dict):
        raise ValueError("the result has no 'policies' object")
    if not policies:
        raise ValueError("the result's 'policies' object is empty")
    for key in ("trace", "scale", "scale_mode"):
        if key not in result:
            raise ValueError(f"the result has no {key!r}")
    if names is None:
        checked = list(policies)
    else:
        checked = [name for name in names if name in policies]
    for name in checked:
        values = policies[name]
        series = values.get("series") if isinstance(values, dict) else None
        if not isinstance(series, dict):
            raise ValueError(f"policy {name!r} has no 'series' object")
        _check_series(name, series)


def select_policies(result: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Return a copy of `result` with only the policies `names`, in that order.

    Raises ValueError for an empty list, a repeated name or a name that is not
    a key of `result["policies"]`.
    """
    if not names:
        raise ValueError("no policy selected")
    available = result["policies"]
    selected: dict[str, Any] = {}
    for name in names:
        if name not in available:
            raise ValueError(
                f"unknown policy {name!r}; the result contains: {', '.join(available)}"
            )
        if name in selected:
            raise ValueError(f"policy {name!r} is listed twice")
        selected[name] = available[name]
    return {**result, "policies": selected}


def find_browser() -> Path:
    """Return the Chrome or Chromium executable that renders the PNG files.

    Uses `BROWSER_PATH` when set, otherwise Debian's `/usr/bin/chromium`.
    Unlike kaleido's own search, this never picks a browser that
    `kaleido_get_chrome` downloaded, and nothing here downloads one. Raises
    BrowserNotFoundError naming the path it looked for and how to install a
    browser.
    """
    configured = os.environ.get(BROWSER_PATH_ENV)
    path = Path(configured) if configured else DEFAULT_BROWSER
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if configured:
        raise BrowserNotFoundError(
            f"no executable browser at {BROWSER_PATH_ENV}={configured}; set "
            f"{BROWSER_PATH_ENV} to a Chrome or Chromium executable, or unset it "
            f"to use {DEFAULT_BROWSER}"
        )
    raise BrowserNotFoundError(
        f"browser {DEFAULT_BROWSER} not found; PNG export needs Chrome or "
        "Chromium: install Debian's chromium (apt-get install chromium) or set "
        f"{BROWSER_PATH_ENV} to a Chrome or Chromium executable"
    )


def _image_size(name: str, result: dict[str, Any]) -> tuple[int, int]:
    if name in ("replicas", "kv_usage"):
        panels = len(result["policies"])
        return IMAGE_WIDTH_PX, PANEL_HEIGHT_PX * panels + PANELS_MARGIN_PX
    return IMAGE_WIDTH_PX, IMAGE_HEIGHT_PX


async def _render_pngs(
    figures: dict[str, tuple[go.Figure, tuple[int, int]]], browser: Path
) -> dict[str, bytes]:
    # Imported here so that the HTML plots and the emulator do not load the
    # browser driver.
    import kaleido
    from choreographer.browsers import Chromium

    class OfflineChromium(Chromium):
        """Chromium started with OFFLINE_CHROMIUM_FLAGS after its usual flags."""

        def get_cli(self) -> list[str]:
            return [*super().get_cli(), *OFFLINE_CHROMIUM_FLAGS]

    images = {}
    async with kaleido.Kaleido(
        path=str(browser),
        browser_cls=OfflineChromium,
        mathjax=False,
        timeout=RENDER_TIMEOUT_S,
        enable_extensions=False,
    ) as renderer:
        for name, (figure, (width, height)) in figures.items():
            images[name] = await renderer.calc_fig(
                figure,
                opts={"format": "png", "width": width, "height": height, "scale": 1},
            )
    return images


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it to `path`.

    The rename replaces `path` in one step, so `path` never contains a partly
    written file. A failure removes the temporary file, but a killed process may
    leave it behind. Raises OSError naming `path` when writing or renaming fails.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with temporary.open("xb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException as exc:
        # A failed clean-up must not hide the error that caused it.
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(f"cannot write {path}: {exc}") from exc
        raise


def write_images(
    result: dict[str, Any], directory: Path, browser: Path | None = None
) -> list[Path]:
    """Render the four figures as PNG files into `directory` (created).

    Returns the paths of `replicas.png`, `load.png`, `kv_usage.png` and
    `failures.png`. `browser` defaults to `find_browser()`. All four are
    rendered before the first is written. Raises ValueError for a result
    that `check_result` rejects, BrowserNotFoundError without a browser,
    ImageExportError when the browser fails, OutputFolderError when
    `directory` cannot be created or written, and OSError naming the file
    when a write fails. Runs its own asyncio event loop, so it must not be
    called from a coroutine.
    """
    from choreographer.errors import BrowserClosedError, BrowserFailedError
    from kaleido.errors import JavascriptError, KaleidoError

    check_result(result)
    browser = browser if browser is not None else find_browser()
    figures = {
        name: (figure, _image_size(name, result))
        for name, figure in _figures(result).items()
    }
    try:
        images = asyncio.run(_render_pngs(figures, browser))
    except TimeoutError as exc:
        raise ImageExportError(
            f"rendering a figure with {browser} timed out after {RENDER_TIMEOUT_S} s"
        ) from exc
    except (BrowserFailedError, BrowserClosedError) as exc:
        # choreographer's message is a tuple of sentences that suggests
        # downloading Chrome, which this project never does.
        raise ImageExportError(
            f"browser {browser} failed to start or closed while rendering; "
            f"check that `{browser} --headless --version` runs"
        ) from exc
    except (KaleidoError, JavascriptError) as exc:
        raise ImageExportError(f"rendering with {browser} failed: {exc}") from exc
    directory = Path(directory)
    prepare_output_folder(directory)
    paths = []
    for name, data in images.items():
        path = directory / f"{name}.png"
        write_atomically(path, data)
        paths.append(path)
    return paths
