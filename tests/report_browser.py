"""Load a report in headless Chromium and read back what the browser made of its images.

A copy of the page gets a small script that, on `load`, writes each <img>'s natural size into a
<pre id="rlaif-image-check">; `--dump-dom` prints the DOM after load, and we parse that element.
An image that failed to decode has naturalWidth 0. Tests skip when Chromium is not installed
(Debian: `apt-get install -y chromium`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]
CHECK_SCRIPT = """<script>
window.addEventListener('load', function () {
  var out = Array.prototype.map.call(document.images, function (i) {
    return {figure: i.dataset.figure || '', width: i.naturalWidth, height: i.naturalHeight};
  });
  var el = document.createElement('pre');
  el.id = 'rlaif-image-check';
  el.textContent = JSON.stringify(out);
  document.body.appendChild(el);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium is not installed (Debian: apt-get update && apt-get install -y chromium)")


def _browser(args: list[str], timeout: int = 120) -> str:
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile every time
        proc = subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stdout


def rendered_images(html_path: Path, work_dir: Path) -> list[dict]:
    """[{figure, width, height}] for every <img> of the page, as Chromium decoded them."""
    page = work_dir / "check.html"
    page.write_text(html_path.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
    dom = _browser(["--virtual-time-budget=10000", "--dump-dom", page.as_uri()])
    match = re.search(r'<pre id="rlaif-image-check">(.*?)</pre>', dom, re.DOTALL)
    assert match, "the check script did not run: the page never fired `load`"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def screenshot(html_path: Path, png_path: Path, width: int = 1280, height: int = 2400) -> None:
    _browser([f"--window-size={width},{height}", f"--screenshot={png_path}", html_path.resolve().as_uri()])
