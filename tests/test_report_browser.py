"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``, installed by .ci/run).

The page is opened twice: once with a small probe script injected at the top of ``<head>``
(records every error event — uncaught exceptions and resources that fail to load — and
every ``console.error``, then on ``load`` counts the images that decoded and measures where
the verdict table lies in a 1280 × 800 window) and dumped with ``--dump-dom``; Chromium's own
console log on stderr is checked too. Then screenshots are taken: the page must show its
plots, and its first screen the verdict table. The checker is shown to catch a broken image
and a console error. Without Chromium these tests fail, they do not skip.

``FARFIELD_REPORT=workspace/report/index.html`` checks a real report (e.g. the one `make
quickstart` or `farfield study` wrote) instead of the tests' own, and
``FARFIELD_FIGURES=docs/figures`` keeps the first-screen screenshot there (``report-top.png``).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from tests.analysis_runs import real_report

pytestmark = pytest.mark.integration

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? 'failed to load <' + t.tagName.toLowerCase() + '> ' + String(t.src || '').slice(0, 80)
                                      : 'uncaught: ' + e.message);
}, true);
(function () { var original = console.error; console.error = function () {
  window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
  return original.apply(console, arguments); }; })();
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  var verdicts = document.getElementById('verdicts');
  var box = verdicts ? verdicts.getBoundingClientRect() : null;
  var out = document.createElement('pre'); out.id = '__probe';
  out.textContent = JSON.stringify({errors: window.__errors, images: images.length, loaded: loaded,
    viewport: [window.innerWidth, window.innerHeight], verdicts: box ? [box.top, box.bottom, box.right] : null});
  document.body.appendChild(out);
});
</script>"""
CONSOLE_LINE = re.compile(r":CONSOLE[^\]]*\]\s*(.*)")
#: A laptop's first screen (CSS pixels).
FIRST_SCREEN = (1280, 800)
#: The first-screen screenshot kept under ``$FARFIELD_FIGURES``.
FIGURE = "report-top.png"


def chromium() -> str:
    """Path of the Chromium binary; the test fails (not skips) without it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("headless Chromium not found: install Debian's `chromium` package "
                    "(`apt-get install -y chromium`; .ci/run does this before `make test`)")
    return found


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    command = [chromium(), *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


def check_page(page: Path, workdir: Path) -> dict:
    """``{"errors": [...], "images": n, "loaded": n, "console": [...]}`` of ``page`` in Chromium."""
    text = page.read_text(encoding="utf-8")
    probed = workdir / f"probed-{page.name}"
    probed.write_text(text.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result = _run([f"--window-size={FIRST_SCREEN[0]},{FIRST_SCREEN[1]}", "--virtual-time-budget=10000", "--dump-dom",
                   probed.resolve().as_uri()], workdir / "profile-dom")
    match = re.search(r'<pre id="__probe">(.*?)</pre>', result.stdout, re.DOTALL)
    if match is None:
        pytest.fail(f"Chromium did not run the page's load event (exit {result.returncode}); stderr tail:\n"
                    f"{result.stderr[-2000:]}")
    found = json.loads(html.unescape(match.group(1)))
    found["console"] = [m.group(1) for m in map(CONSOLE_LINE.search, result.stderr.splitlines()) if m]
    return found


def screenshot(page: Path, workdir: Path, size=(1280, 2400)) -> np.ndarray:
    """(height, width, channels) pixels of a headless screenshot of ``page``."""
    target = workdir / "screenshot.png"
    result = _run([f"--window-size={size[0]},{size[1]}", "--hide-scrollbars", f"--screenshot={target}",
                   page.resolve().as_uri()], workdir / "profile-shot")
    if not target.is_file():
        pytest.fail(f"Chromium wrote no screenshot (exit {result.returncode}); stderr tail:\n{result.stderr[-2000:]}")
    return matplotlib.image.imread(target)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    given = os.environ.get("FARFIELD_REPORT")
    if given:
        return Path(given)
    return real_report(tmp_path_factory).paths["html"]


def test_report_opens_without_console_errors_and_every_image_loads(report_page, tmp_path):
    found = check_page(report_page, tmp_path)
    assert found["errors"] == [] and found["console"] == [], found
    expected = report_page.read_text().count("<img ")
    assert expected >= 6
    assert found["images"] == expected and found["loaded"] == expected, found


def test_report_screenshot_shows_the_rendered_page_with_its_plots(report_page, tmp_path):
    pixels = screenshot(report_page, tmp_path)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    ink = (pixels.mean(axis=2) < 0.9).mean()
    assert 0.02 < ink < 0.9, f"screenshot looks blank or black (ink fraction {ink:.3f})"
    # the summary/parity plots draw in matplotlib's blues: a browser that rendered no image has none
    blue = (pixels[..., 2] > 0.55) & (pixels[..., 0] < 0.45) & (pixels[..., 2] - pixels[..., 0] > 0.25)
    assert blue.mean() > 0.002, f"no plot colours in the screenshot (blue fraction {blue.mean():.4f})"


def test_the_verdict_table_is_in_the_first_screen(report_page, tmp_path):
    found = check_page(report_page, tmp_path)
    top, bottom, right = found["verdicts"]
    width, height = found["viewport"]
    assert width == FIRST_SCREEN[0] and height <= FIRST_SCREEN[1]  # the window, less any browser chrome
    assert 0 < top < bottom <= height and right <= width, found
    pixels = screenshot(report_page, tmp_path, size=FIRST_SCREEN)[..., :3]
    assert pixels.shape[:2] == (FIRST_SCREEN[1], FIRST_SCREEN[0])
    # the verdict badges (amber: inconclusive, green: supported, red: contradicted) are drawn in it
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    amber = (r > 0.95) & (g > 0.85) & (g < 0.95) & (b > 0.55) & (b < 0.75)
    green = (g > 0.85) & (r < 0.85) & (b < 0.85) & (g - r > 0.05)
    red = (r > 0.93) & (g < 0.85) & (b < 0.85) & (r - g > 0.1)
    badges = amber | green | red
    assert badges[: int(bottom) + 1].mean() > 0.001, f"no verdict badge colours above y={bottom:.0f}"
    figures = os.environ.get("FARFIELD_FIGURES")
    if figures:
        shutil.copy(tmp_path / "screenshot.png", Path(figures) / FIGURE)


def test_checker_catches_a_broken_image_and_a_console_error(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><title>x</title></head><body><img src='missing.png'>"
                    "<script>console.error('boom')</script></body></html>")
    found = check_page(page, tmp_path)
    assert found["images"] == 1 and found["loaded"] == 0
    assert any("failed to load <img>" in e for e in found["errors"])
    assert any("boom" in e for e in found["errors"]) and any("boom" in line for line in found["console"])
