"""Plot files as the console serves them: plotly.js from the console itself.

A plotly HTML file may load plotly.js from cdn.plot.ly or from a
`plotly.min.js` beside it. The console may run without network access, so
both script tags are pointed at the plotly.js that the dashboard serves.
Files with plotly.js inline are served as they are.
"""

from __future__ import annotations

import re

from wva_web.dashboard.templatetags.dashboard import plotly_js_url

PLOTLY_SCRIPT = re.compile(
    r"<script[^>]*\bsrc=[\"']"
    r"(?:https?://cdn\.plot\.ly/[^\"']*|plotly(?:\.min)?\.js)"
    r"[\"'][^>]*>\s*</script>",
    re.IGNORECASE,
)


def offline_html(html: str) -> str:
    """Return `html` with every external plotly.js script tag made local."""
    local = f'<script charset="utf-8" src="{plotly_js_url()}"></script>'
    return PLOTLY_SCRIPT.sub(lambda _match: local, html)
