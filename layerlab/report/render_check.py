"""Open a report in real headless Chromium and say what rendered: images (broken ones named) and model-table rows.

``make demo`` runs it on the demo's report; the report tests use it too. A copy of the page gets a
small script that writes the result into the DOM after the load event; ``--dump-dom`` returns it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

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


class ChromiumMissing(RuntimeError):
    """No Chromium binary where Debian's `chromium` package puts it."""


def chromium_binary() -> str:
    """The Chromium binary, or ChromiumMissing saying how to install it."""
    if not Path(CHROMIUM).exists():
        raise ChromiumMissing(f"headless Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium)")
    return CHROMIUM


def render_check(html_file: Path, timeout: float = 90.0) -> dict[str, Any]:
    """Load ``html_file`` in headless Chromium; returns {images, broken, rows, widths}."""
    binary = chromium_binary()
    page = Path(html_file).read_text()
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
    if not match:
        raise RuntimeError(f"{html_file}: chromium did not run the check (rc={proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def main(argv: list[str] | None = None) -> int:
    """`python -m layerlab.report.render_check REPORT_DIR`: exit 1 when an image is broken or a model has no table row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="example: python -m layerlab.report.render_check runs/demo/report")
    parser.add_argument("report", help="the report folder (with index.html and index.json)")
    args = parser.parse_args(argv)
    report = Path(args.report)
    try:
        check = render_check(report / "index.html")
    except ChromiumMissing as exc:
        print(f"report check skipped: {exc}")
        return 0
    expected = sorted(json.loads((report / "index.json").read_text()).get("models", {})) if (report / "index.json").exists() else []
    missing = sorted(set(expected) - set(check["rows"]))
    print(f"report check (headless Chromium): {check['images']} images, {len(check['broken'])} broken; "
          f"model-table rows: {', '.join(check['rows'])}" + (f"; MISSING rows: {', '.join(missing)}" if missing else ""))
    return 1 if check["broken"] or missing or not check["images"] else 0


if __name__ == "__main__":
    sys.exit(main())
