"""Location of plotly.js in the installed plotly package.

plotly.js is MIT-licensed (the licence header is at the top of the file).
The console serves it itself because machines may be offline, so a CDN is
no option.
"""

from __future__ import annotations

from pathlib import Path

import plotly


def plotly_js_path() -> Path:
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def plotly_version() -> str:
    return str(plotly.__version__)
