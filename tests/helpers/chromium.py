"""Open an HTML file in real headless Chromium and report what rendered (images, model-table rows).

A copy of the page gets a small script that, after the load event, writes the check result into
the DOM; ``--dump-dom`` then returns the DOM. Tests skip with a clear message without Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 40));
  const rows = Array.from(document.querySelectorAll('#model-task tbody tr')).map(r => r.dataset.model);
  const out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = JSON.stringify({images: imgs.length, broken: broken, rows: rows,
                                    widths: imgs.map(i => i.naturalWidth)});
  document.body.appendChild(out);
});
</script>"""


def require_chromium() -> str:
    """The Chromium binary, or skip the test saying how to install it."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"headless Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)")
    return CHROMIUM


def render_check(html_file: Path, timeout: float = 90.0) -> dict[str, Any]:
    """Load ``html_file`` in headless Chromium; returns {images, broken, rows, widths}."""
    binary = require_chromium()
    page = html_file.read_text()
    with tempfile.TemporaryDirectory(prefix="layerlab-chromium-") as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(page.replace("</body>", PROBE + "</body>"))
        profile = Path(tmp) / "profile"
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
               f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True)
        shutil.rmtree(profile, ignore_errors=True)
    match = re.search(r'<pre id="render-check">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"chromium did not run the check (rc={proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
