"""Check a report's HTML as a reader gets it: no cut table, no absolute path, every figure present, and
headless Chromium renders it (``python -m repro.report.check``, ``make check-report``)."""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from repro.errors import ReproError
from repro.paths import PROJECT_ROOT

# absolute-path prefixes that must not appear in a report (the checkout's own root first)
FORBIDDEN_PREFIXES = (str(PROJECT_ROOT), "/root", "/work", "/home")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars")
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]*")
_TRUNCATED = re.compile(r"\d+\s+rows\s+[x×]\s+\d+\s+columns")
_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}


class BrowserMissing(ReproError):
    """No Chromium (or Chrome) executable to render the report with."""


class _Page(HTMLParser):
    """The page's <img> sources and the text of every table cell."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[str | None] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs).get("src"))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _image_problem(src: str | None, html: Path, i: int) -> str | None:
    """Why the ``i``-th <img> would not show, or None."""
    if not src:
        return f"image {i}: <img> without a source"
    m = re.fullmatch(r"data:image/(png|jpeg);base64,(.*)", src, flags=re.S)
    if m:
        try:
            data = base64.b64decode(re.sub(r"\s", "", m.group(2)), validate=True)
        except (binascii.Error, ValueError):
            return f"image {i}: its base64 data does not decode"
        if not data.startswith(_MAGIC[m.group(1)]):
            return f"image {i}: its data is not a {m.group(1).upper()} ({len(data)} bytes)"
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                if im.width < 10 or im.height < 10:
                    return f"image {i}: {im.width}×{im.height} px, empty"
        except (OSError, SyntaxError) as e:
            return f"image {i}: does not decode ({e})"
        return None
    if src.startswith("data:"):
        return f"image {i}: unsupported inline image {src[:30]}…"
    target = (html.parent / src).resolve()
    if not target.is_file() or target.stat().st_size == 0:
        return f"image {i}: {src} is missing or empty"
    return f"image {i}: {src} is a separate file (the report must be self-contained)"


def html_problems(html: str | os.PathLike, min_images: int = 1) -> list[str]:
    """What is wrong with the report ``html`` for a reader (empty list: nothing).

    * a table cut by pandas ("90 rows × 10 columns", cells "..." / "…");
    * an absolute path (:data:`FORBIDDEN_PREFIXES`) anywhere outside inline image data;
    * an <img> without data, with data that does not decode, or fewer than ``min_images`` images;
    * a Python traceback.
    """
    html = Path(html)
    text = html.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    problems = []
    plain = _DATA_URI.sub("data:…", text)
    for m in _TRUNCATED.finditer(plain):
        problems.append(f"truncated table: {m.group(0)!r}")
    cut = sum(c in ("...", "…") for c in page.cells)
    if cut:
        problems.append(f"truncated table: {cut} cell(s) read '...'")
    for prefix in FORBIDDEN_PREFIXES:
        for m in re.finditer(r"(?<![\w.~-])" + re.escape(prefix), plain):
            snippet = plain[m.start():m.start() + 60].split("<")[0].split('"')[0]
            problems.append(f"absolute path: {snippet!r}")
    if len(page.images) < min_images:
        problems.append(f"{len(page.images)} image(s), expected at least {min_images}")
    problems += [p for i, src in enumerate(page.images, 1) if (p := _image_problem(src, html, i))]
    if "Traceback (most recent call last)" in plain:
        problems.append("a Python traceback is in the page")
    return list(dict.fromkeys(problems))


def find_chromium() -> str | None:
    """``$CHROMIUM`` or the first of :data:`CHROMIUM_NAMES` on the PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _chromium(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise BrowserMissing("no Chromium to render the report with: install it (Debian/Ubuntu: "
                             "`apt-get install chromium`) or set $CHROMIUM to a Chromium or Chrome executable")
    with tempfile.TemporaryDirectory(prefix="repro-chromium-") as profile_dir:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", *args],
                              capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(html: str | os.PathLike) -> str:
    """The page's DOM after Chromium loaded it (``--dump-dom``)."""
    r = _chromium(["--dump-dom", Path(html).resolve().as_uri()])
    if r.returncode != 0 or "<body" not in r.stdout:
        raise ReproError(f"Chromium could not load {html} (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    return r.stdout


def screenshot(html: str | os.PathLike, png: str | os.PathLike, width: int = 1400, height: int = 30000) -> Path:
    """A PNG of the page's first ``height`` pixels as Chromium renders it at ``width`` px."""
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    r = _chromium([f"--window-size={width},{height}", f"--screenshot={png.resolve()}", Path(html).resolve().as_uri()])
    if r.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        raise ReproError(f"Chromium wrote no screenshot of {html} (exit {r.returncode}): {r.stderr.strip()[-300:]}")
    return png


def render_problems(html: str | os.PathLike, png: str | os.PathLike) -> list[str]:
    """Render ``html`` in headless Chromium: its DOM keeps every <img> and table, the screenshot ``png``
    is not blank. Returns what failed (empty list: nothing)."""
    from PIL import Image

    html = Path(html)
    page = _Page()
    page.feed(html.read_text(encoding="utf-8"))
    dom = _Page()
    dom.feed(dump_dom(html))
    problems = []
    if len(dom.images) != len(page.images):
        problems.append(f"Chromium's DOM holds {len(dom.images)} image(s), the file {len(page.images)}")
    if len(dom.cells) < len(page.cells):
        problems.append(f"Chromium's DOM holds {len(dom.cells)} table cell(s), the file {len(page.cells)}")
    with Image.open(screenshot(html, png)) as im:
        colours = im.convert("RGB").resize((200, 2000)).getcolors(maxcolors=1 << 16)
    if colours is not None and len(colours) < 20:
        problems.append(f"the screenshot {png} is blank ({len(colours)} colour(s))")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m repro.report.check", description=__doc__.splitlines()[0])
    ap.add_argument("html", nargs="*", default=["results/quick/report/report.html"],
                    help="report(s) to check (default: results/quick/report/report.html)")
    ap.add_argument("--screenshot", default=None, help="where to keep the screenshot (default: a temporary file)")
    ap.add_argument("--no-browser", action="store_true", help="only the checks of the file, no Chromium")
    ap.add_argument("--min-images", type=int, default=6, help="fewest figures a report must hold (default 6)")
    args = ap.parse_args(argv)
    bad = 0
    for name in args.html:
        html = Path(name)
        if not html.is_file():
            print(f"{html}: no such report; build it with `make report`", file=sys.stderr)
            return 2
        try:
            problems = html_problems(html, args.min_images)
            if not args.no_browser:
                with tempfile.TemporaryDirectory() as tmp:
                    png = Path(args.screenshot) if args.screenshot else Path(tmp) / "report.png"
                    problems += render_problems(html, png)
        except ReproError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for p in problems:
            print(f"{html}: {p}")
        bad += bool(problems)
        if not problems:
            print(f"{html}: ok (no cut table, no absolute path, every image decodes"
                  + ("" if args.no_browser else ", Chromium renders it") + ")")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
