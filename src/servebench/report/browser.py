"""The report in headless Chromium: every image loaded, no page or console error (CI's check)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

# Injected first into <head> of a copy of the page: records every error while the page loads
# and, once it has loaded, writes the image count and the errors into the DOM.
BROWSER_PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  var t = e.target;
  window.__errors.push(t && t.tagName ? 'resource ' + t.tagName + ' failed' : String(e.message));
}, true);
['error', 'warn'].forEach(function (level) {
  var original = console[level];
  console[level] = function () {
    window.__errors.push(level + ': ' + Array.prototype.join.call(arguments, ' '));
    return original.apply(console, arguments);
  };
});
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  var out = document.createElement('pre');
  out.id = 'probe-result';
  out.textContent = JSON.stringify({images: images.length, loaded: loaded.length,
                                    errors: window.__errors});
  document.body.appendChild(out);
});
</script>"""


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=10000",
)


def chromium_executable() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_check(html_path: str | Path, timeout_s: float = 120.0) -> dict[str, Any]:
    """Open a copy of the page in headless Chromium (fresh profile, no network features):
    {images, loaded, errors (page errors and console errors/warnings), console (Chromium's
    CONSOLE log lines)}. Raises RuntimeError when Chromium is missing or the page did not
    finish loading."""
    import re
    import subprocess
    import tempfile

    executable = chromium_executable()
    if executable is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    page = Path(html_path).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="servebench-browser-") as folder:
        probed = Path(folder, "page.html")
        probed.write_text(page.replace("<head>", "<head>\n" + BROWSER_PROBE, 1), encoding="utf-8")
        profile = Path(folder, "profile")
        profile.mkdir()
        completed = subprocess.run(
            [
                executable,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--dump-dom",
                probed.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    match = re.search(r'<pre id="probe-result">(.*?)</pre>', completed.stdout, re.S)
    if completed.returncode != 0 or not match:
        raise RuntimeError(
            f"chromium exited with {completed.returncode} before the page loaded:\n"
            + completed.stderr[-3000:]
        )
    result = json.loads(html.unescape(match.group(1)))
    result["console"] = [line for line in completed.stderr.splitlines() if ":CONSOLE" in line]
    return result
