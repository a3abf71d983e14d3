"""`python -m fleetsim images` and `compare --images`: PNG files of the plots.

The rendering test drives the real Chrome or Chromium through kaleido. It
skips when `fleetsim.plots.find_browser` finds none, unless
WVA_REQUIRE_SERVERS=1 makes that a failure.
"""

import json
import re
import struct
from pathlib import Path

import pytest

from fleetsim import plots
from fleetsim.__main__ import main
from tests.conftest import skip_or_fail

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_NAMES = ("failures.png", "kv_usage.png", "load.png", "replicas.png")
POLICIES = ("hpa-queue=1", "wva")


@pytest.fixture(scope="module")
def result_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Write the JSON of a short real comparison (two minutes, half the load)."""
    path = tmp_path_factory.mktemp("compare") / "result.json"
    status = main(
        [
            "compare", "--trace", "azure-conv", "--scale", "0.5",
            "--duration", "120", "--policies", ",".join(POLICIES),
            "--json", str(path),
        ]
    )  # fmt: skip
    assert status == 0
    return path


def require_browser() -> None:
    """Skip without a browser, or fail when WVA_REQUIRE_SERVERS=1."""
    try:
        plots.find_browser()
    except plots.BrowserNotFoundError as exc:
        skip_or_fail(str(exc))


def png_size(path: Path) -> tuple[int, int]:
    """Return (width, height) from the IHDR chunk that follows the signature."""
    header = path.read_bytes()[:24]
    return struct.unpack(">II", header[16:24])


def run_images(arguments: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Run `images` and return its exit status and standard error."""
    with pytest.raises(SystemExit) as exit_info:
        main(["images", *arguments])
    return exit_info.value.code, capsys.readouterr().err


@pytest.fixture
def rendered_policies(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace `write_images` in the CLI and collect the policies of each call."""
    rendered: list[list[str]] = []

    def fake_write_images(result, directory):
        rendered.append(list(result["policies"]))
        return []

    monkeypatch.setattr("fleetsim.__main__.write_images", fake_write_images)
    return rendered


@pytest.fixture
def failing_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every `os.replace` fail as on a full disk."""

    def replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(plots.os, "replace", replace)


def test_result_json_has_plot_series(result_file):
    result = json.loads(result_file.read_text())
    assert tuple(result["policies"]) == POLICIES
    for name in POLICIES:
        series = result["policies"][name]["series"]
        for key in (
            *plots.REQUIRED_SERIES,
            "replicas:llama-8b-h100",
            "kv:llama-8b-h100",
        ):
            assert key in series, (name, key)
    plots.check_result(result)


def test_images_writes_four_pngs(result_file, tmp_path, capsys):
    require_browser()
    directory = tmp_path / "images"

    status = main(["images", str(result_file), str(directory)])

    assert status == 0
    # No temporary file is left beside the four PNG files.
    assert sorted(path.name for path in directory.iterdir()) == list(PNG_NAMES)
    out = capsys.readouterr().out
    for name in PNG_NAMES:
        data = (directory / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) > 1000, name
        assert f"wrote {directory / name}" in out
    assert png_size(directory / "load.png") == (
        plots.IMAGE_WIDTH_PX,
        plots.IMAGE_HEIGHT_PX,
    )
    panels_height = plots.PANEL_HEIGHT_PX * len(POLICIES) + plots.PANELS_MARGIN_PX
    assert png_size(directory / "replicas.png") == (plots.IMAGE_WIDTH_PX, panels_height)
    assert png_size(directory / "kv_usage.png") == (plots.IMAGE_WIDTH_PX, panels_height)


def test_images_policies_select_and_order(result_file, tmp_path, rendered_policies):
    status = main(
        ["images", str(result_file), str(tmp_path), "--policies", " wva , hpa-queue=1"]
    )

    assert status == 0
    assert rendered_policies == [["wva", "hpa-queue=1"]]


def test_select_policies_keeps_other_fields(result_file):
    result = json.loads(result_file.read_text())

    selected = plots.select_policies(result, ["wva"])

    assert list(selected["policies"]) == ["wva"]
    assert selected["trace"] == result["trace"]
    assert list(result["policies"]) == list(POLICIES)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "no policy selected"),
        (["wva", "wva"], "policy 'wva' is listed twice"),
        (["hpa"], "unknown policy 'hpa'; the result contains: hpa-queue=1, wva"),
    ],
)
def test_select_policies_rejects(result_file, names, message):
    result = json.loads(result_file.read_text())
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        plots.select_policies(result, names)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("\x89PNG", "is not valid JSON"),
        ("[1, 2]", "the result must be a JSON object, not list"),
        ('{"trace": "azure-conv"}', "the result has no 'policies' object"),
        ('{"policies": {}}', "the result's 'policies' object is empty"),
        (
            '{"trace": "t", "scale": 1, "scale_mode": "compress",'
            ' "policies": {"wva": {"series": {"t": []}}}}',
            "policy 'wva' has no series 'arrival_rps'",
        ),
        ("[" * 100_000 + "]" * 100_000, "is nested too deeply to read"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "is nested too deeply to read"),
    ],
)
def test_images_bad_result_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "result.json"
    path.write_text(content)

    status, err = run_images([str(path), str(tmp_path / "images")], capsys)

    assert status == 2
    assert f"result file {path}" in err
    assert message in err
    assert not (tmp_path / "images").exists()


def broken_result(result_file: Path, policy: str, key: str, value) -> dict:
    """Return the result of `result_file` with one series of `policy` replaced.

    A `value` of ("at", index, element) replaces one element instead.
    """
    result = json.loads(result_file.read_text())
    series = result["policies"][policy]["series"]
    if isinstance(value, tuple):
        _, index, element = value
        series[key][index] = element
    else:
        series[key] = value
    return result


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "failures",
            "abc",
            "series 'failures' must be an array of numbers, not a string ('abc')",
        ),
        (
            "kv:llama-8b-h100",
            5,
            "series 'kv:llama-8b-h100' must be an array of numbers, not a number (5)",
        ),
        (
            "t",
            {"a": 1},
            "series 't' must be an array of numbers, not an object ({'a': 1})",
        ),
        ("arrival_rps", ("at", 3, "x"), "has the string 'x' at index 3"),
        ("arrival_rps", ("at", 2, True), "has the boolean true at index 2"),
        ("failures", ("at", 4, [1]), "has the array [1] at index 4"),
        ("t", ("at", 0, {}), "series 't' has the object {} at index 0"),
        ("replicas:llama-8b-h100", [1, 2], "has 2 values, but 't' has"),
    ],
)
def test_images_broken_series_exit_2(
    result_file, tmp_path, capsys, monkeypatch, key, value, message
):
    # The result is checked before the browser starts, so /bin/false never runs.
    monkeypatch.setenv("BROWSER_PATH", "/bin/false")
    path = tmp_path / "result.json"
    path.write_text(json.dumps(broken_result(result_file, "wva", key, value)))

    status, err = run_images([str(path), str(tmp_path / "images")], capsys)

    assert status == 2
    assert f"result file {path}: policy 'wva': " in err
    assert message in err
    assert "Traceback" not in err


def test_check_result_accepts_gaps(result_file):
    result = json.loads(result_file.read_text())
    series = result["policies"]["wva"]["series"]
    series["arrival_rps"][1] = None
    series["arrival_rps"][2] = float("nan")
    series["failures"][3] = float("inf")
    series["kv:llama-8b-h100"][4] = float("-inf")
    series["replicas:llama-8b-h100"][5] = 10**400

    plots.check_result(result)


def test_images_checks_only_selected_policies(result_file, tmp_path, rendered_policies):
    path = tmp_path / "result.json"
    broken = broken_result(result_file, "hpa-queue=1", "failures", "abc")
    path.write_text(json.dumps(broken))

    status = main(["images", str(path), str(tmp_path), "--policies", "wva"])

    assert status == 0
    assert rendered_policies == [["wva"]]


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("scale", None, "xnull"),
        ("scale", "4", "x4"),
        ("scale", True, "xtrue"),
        ("scale", [1, 2], "x[1, 2]"),
        ("scale", {"copies": 2}, "x{'copies': 2}"),
        ("trace", 7, "Load: 7 x"),
        ("scale_mode", None, "(null)"),
    ],
)
def test_load_title_shows_header_as_given(result_file, field, value, shown):
    result = json.loads(result_file.read_text())
    result[field] = value

    plots.check_result(result)
    title = plots._figures(result)["load"].layout.title.text

    assert shown in title


def test_load_title_shortens_long_header(result_file):
    result = json.loads(result_file.read_text())
    result["scale"] = list(range(10_000))

    title = plots._figures(result)["load"].layout.title.text

    assert len(title) < 200
    assert "..." in title


@pytest.mark.parametrize("position", ["RESULT", "DIR"])
def test_images_empty_path_exit_2(result_file, tmp_path, capsys, position):
    arguments = ["", str(tmp_path)] if position == "RESULT" else [str(result_file), ""]

    status, err = run_images(arguments, capsys)

    assert status == 2
    assert f"argument {position}: empty path" in err


@pytest.mark.parametrize("below", [False, True])
def test_images_folder_that_is_file_exit_2(
    result_file, tmp_path, capsys, monkeypatch, below
):
    # DIR is checked before the browser starts, so /bin/false never runs.
    monkeypatch.setenv("BROWSER_PATH", "/bin/false")
    blocker = tmp_path / "file"
    blocker.write_text("")
    directory = blocker / "images" if below else blocker

    status, err = run_images([str(result_file), str(directory)], capsys)

    assert status == 2
    assert f"DIR: {blocker} is a file, not a folder" in err
    assert blocker.read_text() == ""


def test_images_uncreatable_folder_exit_2(result_file, tmp_path, capsys, monkeypatch):
    async def fake_render(figures, browser):
        return {name: PNG_SIGNATURE for name in figures}

    def failing_mkdir(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setenv("BROWSER_PATH", "/bin/true")
    monkeypatch.setattr(plots, "_render_pngs", fake_render)
    monkeypatch.setattr(Path, "mkdir", failing_mkdir)
    directory = tmp_path / "images"

    status, err = run_images([str(result_file), str(directory)], capsys)

    assert status == 2
    assert f"DIR: cannot create folder {directory}" in err
    assert "Permission denied" in err


def test_write_plots_writes_pages_and_bundle(result_file, tmp_path):
    from plotly.offline import get_plotlyjs

    result = json.loads(result_file.read_text())
    directory = tmp_path / "plots"
    stale = "stale bundle of another plotly version"
    directory.mkdir()
    (directory / "plotly.min.js").write_text(stale)

    paths = plots.write_plots(result, directory)

    names = ["replicas.html", "load.html", "kv_usage.html", "failures.html"]
    assert [path.name for path in paths] == names
    assert sorted(path.name for path in directory.iterdir()) == sorted(
        [*names, "plotly.min.js"]
    )
    assert (directory / "plotly.min.js").read_text() == get_plotlyjs()
    for path in paths:
        assert 'src="plotly.min.js"' in path.read_text(), path.name


@pytest.mark.usefixtures("failing_replace")
def test_write_plots_keeps_old_file_on_failure(result_file, tmp_path):
    result = json.loads(result_file.read_text())
    directory = tmp_path / "plots"
    directory.mkdir()
    (directory / "replicas.html").write_text("old")

    with pytest.raises(OSError, match="^cannot write .*plotly.min.js: disk full$"):
        plots.write_plots(result, directory)

    assert (directory / "replicas.html").read_text() == "old"
    assert [path.name for path in directory.iterdir()] == ["replicas.html"]


def test_images_missing_file_exit_2(tmp_path, capsys):
    path = tmp_path / "missing.json"

    status, err = run_images([str(path), str(tmp_path / "images")], capsys)

    assert status == 2
    assert f"result file {path} not found" in err
    assert "compare --json" in err


def test_images_unknown_policy_exit_2(result_file, tmp_path, capsys):
    status, err = run_images(
        [str(result_file), str(tmp_path), "--policies", "wva,hpa-kv"], capsys
    )

    assert status == 2
    assert "unknown policy 'hpa-kv'" in err
    assert "hpa-queue=1, wva" in err


def test_images_browser_path_missing_exit_2(result_file, tmp_path, capsys, monkeypatch):
    browser = tmp_path / "no-such-chrome"
    monkeypatch.setenv("BROWSER_PATH", str(browser))

    status, err = run_images([str(result_file), str(tmp_path / "images")], capsys)

    assert status == 2
    assert f"no executable browser at BROWSER_PATH={browser}" in err
    assert not (tmp_path / "images").exists()


def test_images_default_browser_missing_exit_2(
    result_file, tmp_path, capsys, monkeypatch
):
    browser = tmp_path / "usr-bin-chromium"
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(plots, "DEFAULT_BROWSER", browser)

    status, err = run_images([str(result_file), str(tmp_path / "images")], capsys)

    assert status == 2
    assert f"browser {browser} not found" in err
    assert "apt-get install chromium" in err
    assert "BROWSER_PATH" in err


def test_compare_images_without_browser_exit_2(tmp_path, capsys, monkeypatch):
    browser = tmp_path / "no-such-chrome"
    monkeypatch.setenv("BROWSER_PATH", str(browser))

    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "compare", "--trace", "azure-conv", "--duration", "60",
                "--images", str(tmp_path / "images"),
            ]
        )  # fmt: skip

    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert f"BROWSER_PATH={browser}" in captured.err
    # The browser is looked for before the simulation, so no table is printed.
    assert "goodput_rps" not in captured.out


def test_images_browser_fails_to_start_exit_1(
    result_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("BROWSER_PATH", "/bin/false")

    status, err = run_images([str(result_file), str(tmp_path / "images")], capsys)

    assert status == 1
    assert "browser /bin/false failed to start" in err
    assert not (tmp_path / "images").exists()


@pytest.mark.usefixtures("failing_replace")
def test_write_atomically_removes_temporary_on_failure(tmp_path):
    target = tmp_path / "load.png"
    target.write_bytes(b"old")

    with pytest.raises(OSError, match=f"^cannot write {target}: disk full$"):
        plots.write_atomically(target, PNG_SIGNATURE + b"new")

    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["load.png"]


@pytest.mark.usefixtures("failing_replace")
def test_compare_json_cleanup_failure_exit_1(
    result_file, tmp_path, capsys, monkeypatch
):
    result = json.loads(result_file.read_text())
    monkeypatch.setattr(
        "fleetsim.__main__.run_comparison", lambda options, progress: result
    )
    original_unlink = Path.unlink

    def failing_unlink(self, *args, **kwargs):
        # The probe of the output folder check is still removed.
        if self.name.startswith(".fleetsim-probe-"):
            return original_unlink(self, *args, **kwargs)
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "unlink", failing_unlink)
    target = tmp_path / "result.json"

    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--trace", "azure-conv", "--json", str(target)])

    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    # The message names the failed write, not the failed clean-up after it.
    assert f"--json: cannot write {target}: disk full" in err
    assert not target.exists()


def test_compare_images_unsearchable_folder_exit_2(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "private" / "images"
    original_stat = Path.stat

    def failing_stat(self, *args, **kwargs):
        # stat() fails like this for a non-root user who may not search the parent.
        if self == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return original_stat(self, *args, **kwargs)

    monkeypatch.setenv("BROWSER_PATH", "/bin/true")
    monkeypatch.setattr(Path, "stat", failing_stat)

    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--trace", "azure-conv", "--images", str(folder)])

    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"--images: cannot check folder {folder}" in err
    assert "Permission denied" in err
