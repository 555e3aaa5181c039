"""The built page in a real browser: headless Chromium (Debian's ``chromium``) loads ``index.html`` from disk,
every figure and table is in the rendered DOM, every image decodes to its PNG's size, and a screenshot is taken.

CI installs the browser with ``apt-get install -y chromium``; without ``/usr/bin/chromium`` the test is skipped.
Set ``DICTLAB_REPORT_SCREENSHOT=/some/path.png`` to keep the screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from dictlab.report import build_report
from dictlab.report.html import png_size

from .conftest import EXPECTED_FIGURES, read_page

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# Injected into a copy of the page (the report itself has no script): after load, write what the browser
# made of every image and how many figures/tables it rendered into the DOM for --dump-dom to print. A broken
# image is added as a control, so the check is shown to tell a decoded image from a broken one.
PROBE = """
<img id="broken-control" alt="control" src="data:image/png;base64,AAAA">
<script>
window.addEventListener("load", () => {  // fires once every image has loaded or failed
  const images = [...document.images];
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({
    images: images.map(i => ({id: i.id, w: i.naturalWidth, h: i.naturalHeight, \
shown: i.getBoundingClientRect().width})),
    figures: document.querySelectorAll("figure img, figure svg").length,
    tables: document.querySelectorAll("table").length,
  });
  document.body.appendChild(out);
});
</script>
"""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)"
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def page(store_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(store_path, tmp_path_factory.mktemp("report"), formats=("png",))


def test_every_figure_and_table_renders_and_every_image_decodes(page: Path, tmp_path: Path):
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    result = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="render-check">(.*?)</pre>', result.stdout, re.S)
    assert found, "the probe did not run: " + result.stdout[-500:]
    report = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))

    source = read_page(page)
    expected_sizes = [png_size(base64.b64decode(a["src"].split(",", 1)[1])) for t, a in source.tags if t == "img"]
    n_figures = sum(len(m) for m in EXPECTED_FIGURES.values())
    assert len(expected_sizes) == n_figures
    assert report["figures"] == n_figures
    assert report["tables"] == len(source.tables) >= 1 + len(EXPECTED_FIGURES)
    figures = [i for i in report["images"] if i["id"] != "broken-control"]
    assert [(i["w"], i["h"]) for i in figures] == expected_sizes
    assert all(0 < i["shown"] <= 1280 for i in figures), "a figure is hidden or wider than the window"
    (control,) = [i for i in report["images"] if i["id"] == "broken-control"]
    assert control["w"] == 0, "the probe cannot tell a broken image from a decoded one"


def test_screenshot_shows_the_page(page: Path, tmp_path: Path):
    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2000)
    # a rendered page, not a blank one: dark text and figures on a light background
    assert ImageStat.Stat(image).stddev[0] > 20 and image.getextrema()[0] < 60
    keep = os.environ.get("DICTLAB_REPORT_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, keep)
