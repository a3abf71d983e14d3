"""plotly.js caching and compression, the favicon, and the API's own pages."""

from __future__ import annotations

import gzip

import plotly
from django.test import Client

from tests.dashboard.conftest import World

PLOTLY_URL = "/vendor/plotly.min.js"
YEAR_S = 365 * 24 * 3600


def test_plotly_js_cached_for_a_year(world: World) -> None:
    response = world.client("viewer_a").get(PLOTLY_URL)
    response.close()
    assert response["Cache-Control"] == f"public, max-age={YEAR_S}, immutable"
    assert response["ETag"] == f'"plotly-{plotly.__version__}"'


def test_plotly_js_gzip_when_accepted(world: World) -> None:
    # given a browser that accepts gzip
    client = world.client("viewer_a")
    # when
    response = client.get(PLOTLY_URL, headers={"accept-encoding": "gzip, br"})
    # then the body is gzip, about a third of the 4.8 MB file
    assert response["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response["Vary"]
    assert len(response.content) < 2_000_000
    head = gzip.decompress(response.content)[:200]
    assert b"Licensed under the MIT license" in head


def test_plotly_js_plain_when_gzip_refused(world: World) -> None:
    client = world.client("viewer_a")
    response = client.get(PLOTLY_URL, headers={"accept-encoding": "gzip;q=0"})
    response.close()
    assert not response.has_header("Content-Encoding")
    assert response.streaming


def test_plotly_js_not_modified_for_matching_etag(world: World) -> None:
    client = world.client("viewer_a")
    etag = f'"plotly-{plotly.__version__}"'
    response = client.get(PLOTLY_URL, headers={"if-none-match": etag})
    assert response.status_code == 304
    assert response.content == b""


def test_favicon_served_without_login(db: None) -> None:
    response = Client().get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response.content.startswith(b"<svg")


def test_pages_link_favicon(world: World) -> None:
    body = world.client("viewer_a").get("/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in body


def test_browsable_api_links_console_and_logout(world: World) -> None:
    # when a signed-in user opens the browsable API
    response = world.client("viewer_a").get("/api/v1/", headers={"accept": "text/html"})
    body = response.content.decode()
    # then its top bar leads back to the console and logs out by POST
    assert '<a class="navbar-brand" href="/" id="api-console-link">' in body
    assert '<form method="post" action="/logout/" class="api-logout">' in body
    assert "django-rest-framework.org" not in body


def test_api_docs_load_no_cdn(world: World) -> None:
    response = world.client("viewer_a").get("/api/v1/docs/")
    body = response.content.decode()
    assert response.status_code == 200
    assert '<script src="/static/drf_spectacular_sidecar/redoc/bundles/' in body
    assert "https://" not in body


def test_redoc_bundle_served_from_static(world: World) -> None:
    url = "/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"
    response = world.client("viewer_a").get(url)
    head = b"".join(response.streaming_content)[:100]
    response.close()
    assert response.status_code == 200
    assert len(head) == 100
