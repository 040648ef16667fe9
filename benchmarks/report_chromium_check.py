"""Check an HTML report in real headless Chromium: it renders, logs no console errors, and makes no
network requests (every request is routed to a local recording proxy). Writes a screenshot.

    python benchmarks/report_chromium_check.py report.html docs/report_screenshot.png

Needs Debian's `chromium` (apt-get install chromium); not part of the test suite.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path


def _recording_proxy() -> tuple[int, list[bytes]]:
    seen: list[bytes] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.settimeout(2)
            try:
                seen.append(conn.recv(1024))
            except OSError:
                seen.append(b"")
            conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return srv.getsockname()[1], seen


def main() -> int:
    html, shot = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    port, seen = _recording_proxy()
    with tempfile.TemporaryDirectory() as prof:
        common = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={prof}",
                  f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update",
                  "--enable-logging=stderr", "--v=0"]
        dom = subprocess.run(common + ["--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120)
        subprocess.run(common + ["--window-size=1280,1800", f"--screenshot={shot.resolve()}", html.as_uri()],
                       capture_output=True, text=True, timeout=120)
    console_errors = [ln for ln in dom.stderr.splitlines() if re.search(r"CONSOLE.*(error|Uncaught)", ln, re.I)]
    rendered = "<svg" in dom.stdout and len(dom.stdout) > 1000
    print(f"rendered: {rendered} ({len(dom.stdout)} chars of DOM, {dom.stdout.count('<svg')} SVG charts)")
    print(f"console errors: {len(console_errors)}")
    # Chromium itself calls home (time sync, accounts, component updates) even for a blank page; those hosts
    # are not the report's. Anything else is.
    browser_own = re.compile(r"(google\.com|gvt1\.com|googleapis\.com|gstatic\.com)(:\d+)?(/|$)")
    hosts = sorted({m.group(1).decode() for r in seen for m in [re.search(rb"^[A-Z]+ (\S+)", r)] if m})
    page = [h for h in hosts if not browser_own.search(h)]
    print(f"network requests by the page: {len(page)} {page} (Chromium's own background calls: {len(seen)})")
    seen = page
    print(f"screenshot: {shot} ({shot.stat().st_size if shot.exists() else 0} bytes)")
    for ln in console_errors[:5]:
        print("  ", ln)
    return 0 if rendered and not console_errors and not seen and shot.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
