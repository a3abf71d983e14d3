"""The container image's web command serves pages; its COPY sources exist.

CI does not build the image, because no container registry is reachable
there. These tests check what can be checked without one. The CMD runs
from the virtualenv, and every file that the build copies exists in the
repository and in the build context.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.ports import free_port

BASE_DIR = Path(settings.BASE_DIR)
DOCKERFILE = BASE_DIR / "Dockerfile"
DOCKERIGNORE = BASE_DIR / ".dockerignore"
PORTS = range(18500, 18600)
START_TIMEOUT_S = 60.0


def instructions(name: str) -> list[str]:
    """Return the arguments of every Dockerfile instruction `name`."""
    lines = DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
    prefix = f"{name} "
    return [line[len(prefix) :].strip() for line in lines if line.startswith(prefix)]


def image_command() -> list[str]:
    (cmd,) = instructions("CMD")
    command = json.loads(cmd)
    assert isinstance(command, list), f"CMD must be in exec form, got {cmd!r}"
    return [str(part) for part in command]


def copy_sources() -> list[str]:
    sources = []
    for arguments in instructions("COPY"):
        parts = [part for part in shlex.split(arguments) if not part.startswith("--")]
        sources.extend(parts[:-1])
    return sources


def image_tree(app: Path) -> Path:
    """Copy only the Dockerfile's COPY sources to `app` and collect static files.

    A module that the image leaves out then fails here as it would in the
    container, instead of being found in the checkout.
    """
    app.mkdir()
    for source in copy_sources():
        origin = BASE_DIR / source
        if origin.is_dir():
            shutil.copytree(
                origin,
                app / source,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
        else:
            shutil.copy2(origin, app / source)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{app / 'check.sqlite3'}"}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=app,
        env=env,
        check=True,
        timeout=120,
    )
    return app


def wait_for_http(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Wait until the server responds on `url`. Fail if it exits or times out."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"gunicorn exited with {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            # The first request loads the Django application in a worker.
            requests.get(url, timeout=15)
            return
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"gunicorn did not answer on {url} within "
                    f"{START_TIMEOUT_S:.0f} s:\n{log_path.read_text()}"
                )
            time.sleep(0.3)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def gunicorn_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run the image's CMD from the virtualenv, bound to loopback."""
    tmp_path = tmp_path_factory.mktemp("gunicorn")
    app = image_tree(tmp_path / "app")
    command = image_command()
    assert command[0] == "gunicorn"
    port = free_port(PORTS)
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"

    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["DJANGO_SETTINGS_MODULE"] = "wva_web.settings"
    # A database of its own, so the server cannot touch the demo's in var/.
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'web.sqlite3'}"

    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=app,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(process, f"{url}/login/", log_path)
        yield url
    finally:
        stop(process)


def test_gunicorn_serves_login_page(gunicorn_url):
    response = requests.get(f"{gunicorn_url}/login/", timeout=10)
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in response.text
    assert 'name="password"' in response.text


def test_gunicorn_redirects_anonymous_to_login(gunicorn_url):
    response = requests.get(f"{gunicorn_url}/", timeout=10, allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login/")


def test_gunicorn_serves_static_files(gunicorn_url):
    response = requests.get(f"{gunicorn_url}/static/css/console.css", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")


def test_dockerfile_copy_sources_exist():
    sources = copy_sources()
    assert "requirements.txt" in sources
    assert "wva_web/" in sources
    for source in sources:
        assert (BASE_DIR / source).exists(), f"COPY source {source} is missing"


def test_dockerignore_keeps_copy_sources():
    # The context excludes everything, then lets each copied path back in.
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    for source in copy_sources():
        assert f"!{source}" in patterns, f"{source} is excluded by .dockerignore"


def test_dockerfile_runs_as_non_root():
    (user,) = instructions("USER")
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
