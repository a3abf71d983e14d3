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
    # Only the four PNG files: no temporary file is left beside them.
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


def test_images_policies_select_and_order(result_file, tmp_path, monkeypatch):
    rendered = []

    def fake_write_images(result, directory):
        rendered.append(list(result["policies"]))
        return []

    monkeypatch.setattr("fleetsim.__main__.write_images", fake_write_images)

    status = main(
        ["images", str(result_file), str(tmp_path), "--policies", " wva , hpa-queue=1"]
    )

    assert status == 0
    assert rendered == [["wva", "hpa-queue=1"]]


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


def test_write_atomically_removes_temporary_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "load.png"
    target.write_bytes(b"old")

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(plots.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        plots._write_atomically(target, PNG_SIGNATURE + b"new")

    assert target.read_bytes() == b"old"
    assert [path.name for path in tmp_path.iterdir()] == ["load.png"]
