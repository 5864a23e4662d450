"""Check a report's HTML as a reader gets it: self-contained (nothing fetched or linked outside the file,
no math left to a CDN), tidy tables (not cut, no pandas row index, no ``1863516.0``, blank instead of
NaN/None, fit or scroll), no absolute path, every figure present with data and alt text, a real title,
no log line; and headless Chromium renders it offline (:func:`check_report`; ``make check-report``)."""

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
from repro.report.display import DATA_MARK, MIN_INK, figure_ink

# absolute-path prefixes that must not appear in a report (the checkout's own root first)
FORBIDDEN_PREFIXES = (str(PROJECT_ROOT), "/root", "/work", "/home")
LAYOUT_WIDTH = 1280  # px: the window a reader sees the report in (tables must fit it or scroll)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--host-resolver-rules=MAP * ~NOTFOUND")  # offline: a reference that leaves the file fails
_DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]*")
_TRUNCATED = re.compile(r"\d+\s+rows\s+[x×]\s+\d+\s+columns")
_MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}


class BrowserMissing(ReproError):
    """No Chromium (or Chrome) executable to render the report with."""


# attributes that load or link something; in a self-contained report they may only hold inline data or "#anchor"
URL_ATTRIBUTES = ("src", "href", "srcset", "data", "poster", "action", "formaction", "xlink:href", "background")
_INSIDE = re.compile(r"\s*(#|data:)", re.I)
_CSS_URL = re.compile(r"@import\s+(?:url\(\s*)?['\"]?([^'\")\s;]+)|url\(\s*['\"]?([^'\")\s]+)", re.I)
_SCRIPT_URL = re.compile(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s'\"`)]*", re.I)
_TEX = re.compile(r"\$\$.+?\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$|\\\(.+?\\\)|\\\[.+?\\\]", re.S)
_NOT_A_VALUE = {"nan", "none", "nat", "<na>", "null"}
_WHOLE_FLOAT = re.compile(r"[+-]?\d+\.0")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_NOTEBOOK_TITLE = re.compile(r"\s*\d+\s*[·:.\-–]")  # "06 · Report…": a notebook's number, not a title
NO_ALT = "No description has been provided for this image"


class _Page(HTMLParser):
    """What the checks read from a page: <img> sources and alt text, every table (rows of (tag, text)
    cells), the links and sources of every element, style sheets, scripts, the title and the <h1>s,
    plain-text outputs (printed log lines) and the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[str | None] = []
        self.alts: list[str | None] = []
        self.cells: list[str] = []
        self.tables: list[list[list[tuple[str, str]]]] = []
        self.urls: list[tuple[str, str, str]] = []      # (tag, attribute, value)
        self.styles: list[str] = []                     # <style> bodies and style="" attributes
        self.scripts: list[str] = []                    # inline <script> bodies
        self.title: str | None = None
        self.h1: list[str] = []
        self.printed: list[str] = []                    # plain-text outputs (print(), a bare repr)
        self.text: list[str] = []                       # visible text, outside scripts and styles
        self._cell: list[str] | None = None
        self._cell_tag = ""
        self._table_depth = 0
        self._raw: str | None = None                    # "script", "style", "title", "h1" being read
        self._raw_text: list[str] = []
        self._plain_depth = 0                           # >0 inside a jp-RenderedText output
        self._div_depth = 0
        self._plain: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name, value in attrs:
            if name in URL_ATTRIBUTES and value is not None:
                self.urls.append((tag, name, value))
            elif name == "style" and value:
                self.styles.append(value)
        if tag == "img":
            self.images.append(a.get("src"))
            self.alts.append(a.get("alt"))
        elif tag == "table":
            self._table_depth += 1
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._cell_tag = [], tag
        elif tag in ("script", "style", "title", "h1"):
            self._raw, self._raw_text = tag, []
        if tag == "div":
            self._div_depth += 1
            if self._plain_depth:
                self._plain_depth += 1
            elif "jp-RenderedText" in (a.get("class") or "").split() and "stderr" not in (a.get("data-mime-type") or ""):
                self._plain_depth, self._plain = 1, []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            self.cells.append(text)
            if self.tables and self.tables[-1]:
                self.tables[-1][-1].append((self._cell_tag, text))
            self._cell = None
        elif tag == self._raw:
            body = "".join(self._raw_text).strip()
            if tag == "title":
                self.title = body
            else:
                {"script": self.scripts, "style": self.styles, "h1": self.h1}[tag].append(body)
            self._raw = None
        elif tag == "div" and self._plain_depth:
            self._plain_depth -= 1
            if not self._plain_depth and "".join(self._plain).strip():
                self.printed.append("".join(self._plain).strip())

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._raw is not None:
            self._raw_text.append(data)
        if self._raw not in ("script", "style"):
            self.text.append(data)
            if self._plain_depth:
                self._plain.append(data)


#: the fewest figures a full report holds (metric vs p, claims, τ, confusion, top-k, Grad-CAM)
MIN_IMAGES = 6

def _image_problem(src: str | None, html: Path, i: int) -> str | None:
    """Why the ``i``-th <img> would not show, or shows a figure without data; None when it is fine."""
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
                marked = getattr(im, "text", {}).get(DATA_MARK[0]) == DATA_MARK[1]
                ink = 1.0 if marked else figure_ink(im)
        except (OSError, SyntaxError) as e:
            return f"image {i}: does not decode ({e})"
        if ink < MIN_INK:
            return (f"image {i}: a figure without data ({ink:.2%} of its pixels coloured): leave it out and "
                    "say what is missing")
        return None
    if src.startswith("data:"):
        return f"image {i}: unsupported inline image {src[:30]}…"
    if re.match(r"\s*([a-z][\w+.-]*:)?//", src, re.I):
        return None  # a remote image: reported with the other references that leave the file
    target = (html.parent / src).resolve()
    if not target.is_file() or target.stat().st_size == 0:
        return f"image {i}: {src} is missing or empty"
    return f"image {i}: {src} is a separate file (the report must be self-contained)"


def external_references(page: _Page) -> list[str]:
    """Everything the page would fetch or link outside itself: ``src=``/``href=`` (and the like) that is
    not inline data or an in-page anchor, ``@import`` / ``url(...)`` in styles (remote style sheets and
    fonts), and URLs in inline scripts (``import("https://…")``, a loader's CDN)."""
    out = []
    for tag, attr, value in page.urls:
        if not _INSIDE.match(value):
            out.append(f"leaves the file: <{tag} {attr}=\"{value[:100]}\">")
    for css in page.styles:
        for m in _CSS_URL.finditer(css):
            url = m.group(1) or m.group(2)
            if not _INSIDE.match(url):
                what = "@import" if m.group(1) else ("font" if "@font-face" in css else "url()")
                out.append(f"leaves the file: style {what} {url[:100]}")
    for js in page.scripts:
        for m in _SCRIPT_URL.finditer(js):
            out.append(f"leaves the file: a script loads {m.group(0)[:100]}")
    return out


def _table_name(i: int, table: list[list[tuple[str, str]]]) -> str:
    head = [t for _, t in (table[0] if table else []) if t][:3]
    return f"table {i}" + (f" ({', '.join(head)}, …)" if head else "")


def table_problems(page: _Page) -> list[str]:
    """Untidy tables: pandas' row index (a first column 0, 1, 2, …), whole numbers printed as
    ``1863516.0`` (a column or header row whose numbers all end in ``.0``), and ``NaN``/``None`` where a
    cell has no value (it should be blank)."""
    out = []
    for i, table in enumerate(page.tables, 1):
        name = _table_name(i, table)
        body = [row for row in table if row and not all(tag == "th" for tag, _ in row)]
        first = [row[0] for row in body]
        if first and all(tag == "th" for tag, _ in first) and [t for _, t in first] == [str(k) for k in range(len(first))]:
            out.append(f"{name}: shows pandas' row index (0, 1, 2, …) as its first column")
        cells = [t for row in table for _, t in row]
        # a header row, or a column of data cells (aligned from the right: row labels may span rows),
        # whose numbers all read "<n>.0": integers printed as floats (a column mixing 29.4 and 25.0 is fine)
        lines = [[t for _, t in row] for row in table if row and all(tag == "th" for tag, _ in row)]
        tds = [[t for tag, t in row if tag == "td"] for row in body]
        lines += [[r[-1 - j] for r in tds if len(r) > j] for j in range(max(map(len, tds), default=0))]
        whole = [t for line in lines
                 if (nums := [t for t in line if _NUMBER.fullmatch(t)]) and all(_WHOLE_FLOAT.fullmatch(t) for t in nums)
                 for t in nums]
        if whole:
            out.append(f"{name}: {len(whole)} whole number(s) printed as decimals, e.g. {whole[0]!r}")
        empty = [t for t in cells if t.lower() in _NOT_A_VALUE]
        if empty:
            out.append(f"{name}: {len(empty)} cell(s) read NaN/None instead of being blank, e.g. {empty[0]!r}")
    return out


def html_problems(html: str | os.PathLike, min_images: int = 1) -> list[str]:
    """What is wrong with the report ``html`` for a reader (empty list: nothing).

    * a reference that leaves the file (:func:`external_references`): a remote script, style sheet,
      font or image, a link to another file;
    * TeX math left for a script to typeset (``$\\pm$``, ``\\(…\\)``): it reads as raw TeX;
    * a table cut by pandas ("90 rows × 10 columns", cells "..." / "…") or untidy (:func:`table_problems`);
    * an absolute path (:data:`FORBIDDEN_PREFIXES`) anywhere outside inline image data;
    * an <img> without data, with data that does not decode, a figure without data, an image without
      alt text (or nbconvert's stand-in), or fewer than ``min_images`` images;
    * no title, or a notebook's number as the title ("06 · Report…");
    * printed output (a log line) in the page, a Python traceback.
    """
    html = Path(html)
    text = html.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    problems = external_references(page)
    visible = "".join(page.text)
    for m in _TEX.finditer(_DATA_URI.sub("data:…", visible)):
        problems.append(f"TeX math that only a script would typeset: {m.group(0)[:60]!r}")
    plain = _DATA_URI.sub("data:…", text)
    for m in _TRUNCATED.finditer(plain):
        problems.append(f"truncated table: {m.group(0)!r}")
    cut = sum(c in ("...", "…") for c in page.cells)
    if cut:
        problems.append(f"truncated table: {cut} cell(s) read '...'")
    problems += table_problems(page)
    for prefix in FORBIDDEN_PREFIXES:
        for m in re.finditer(r"(?<![\w.~-])" + re.escape(prefix), plain):
            snippet = plain[m.start():m.start() + 60].split("<")[0].split('"')[0]
            problems.append(f"absolute path: {snippet!r}")
    if len(page.images) < min_images:
        problems.append(f"{len(page.images)} image(s), expected at least {min_images}")
    problems += [p for i, src in enumerate(page.images, 1) if (p := _image_problem(src, html, i))]
    for i, alt in enumerate(page.alts, 1):
        if not (alt or "").strip() or alt.strip() == NO_ALT:
            problems.append(f"image {i}: no alt text (its caption belongs there)" + (f", only {NO_ALT!r}" if alt else ""))
    if not page.title:
        problems.append("the page has no <title>")
    for title in [page.title or "", *page.h1[:1]]:
        if _NOTEBOOK_TITLE.match(title):
            problems.append(f"a notebook's number as the title: {title[:60]!r}")
    for line in page.printed:
        problems.append(f"printed output in the page (a log line): {line.splitlines()[0][:80]!r}")
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


def dump_dom(html: str | os.PathLike, width: int = LAYOUT_WIDTH) -> str:
    """The page's DOM after Chromium loaded it in a ``width`` px window (``--dump-dom``)."""
    r = _chromium([f"--window-size={width},900", "--dump-dom", Path(html).resolve().as_uri()])
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


# run in Chromium at the end of a copy of the page: every table must fit the window or scroll inside a box
# that does; the findings go into <pre id="repro-layout"> of the dumped DOM, one per line
_LAYOUT_SCRIPT = """<script>(function () {
  const vw = document.documentElement.clientWidth, out = [];
  document.querySelectorAll("table").forEach(function (t, i) {
    const right = t.getBoundingClientRect().right;
    let el = t.parentElement, cut = null, box = null;
    for (; el && el !== document.body; el = el.parentElement) {
      const s = getComputedStyle(el), r = el.getBoundingClientRect().right;
      if (s.overflowX === "auto" || s.overflowX === "scroll") { box = el; break; }
      if ((s.overflowX === "hidden" || s.overflowX === "clip") && right > r + 1 && !cut) cut = el;
    }
    const head = Array.from(t.querySelectorAll("th")).map(function (c) { return c.textContent.trim(); })
      .filter(Boolean).slice(0, 3).join(", ");
    const name = "table " + (i + 1) + (head ? " (" + head + ", …)" : "");
    const w = Math.round(t.getBoundingClientRect().width);
    if (cut) out.push(name + ": " + w + " px wide, cut off by a box that hides its overflow");
    else if (box ? box.getBoundingClientRect().right > vw + 1 : right > vw + 1)
      out.push(name + ": " + w + " px wide in a " + vw + " px window, wider than the page and not scrollable");
  });
  const pre = document.createElement("pre");
  pre.id = "repro-layout";
  pre.textContent = out.join("\\n");
  document.body.appendChild(pre);
})();</script>"""
def layout_problems(html: str | os.PathLike, width: int = LAYOUT_WIDTH) -> list[str]:
    """Tables that neither fit a ``width`` px window nor scroll, as Chromium lays the page out."""
    import html as html_lib

    text = Path(html).read_text(encoding="utf-8")
    cut = text.lower().rfind("</body>")
    probe = (text[:cut] + _LAYOUT_SCRIPT + text[cut:]) if cut >= 0 else text + _LAYOUT_SCRIPT
    with tempfile.TemporaryDirectory(prefix="repro-layout-") as tmp:
        copy = Path(tmp) / "page.html"
        copy.write_text(probe, encoding="utf-8")
        dom = dump_dom(copy, width)
    m = re.search(r'<pre id="repro-layout">(.*?)</pre>', dom, flags=re.S)
    if m is None:
        return ["Chromium did not run the layout check (no scripts run?)"]
    return [line for line in html_lib.unescape(m.group(1)).splitlines() if line.strip()]


def render_problems(html: str | os.PathLike, png: str | os.PathLike) -> list[str]:
    """Render ``html`` in headless Chromium, offline: its DOM keeps every <img> and table, every table
    fits the window or scrolls (:func:`layout_problems`), the screenshot ``png`` is not blank.
    Returns what failed (empty list: nothing)."""
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
    problems += layout_problems(html)
    with Image.open(screenshot(html, png)) as im:
        colours = im.convert("RGB").resize((200, 2000)).getcolors(maxcolors=1 << 16)
    if colours is not None and len(colours) < 20:
        problems.append(f"the screenshot {png} is blank ({len(colours)} colour(s))")
    return problems


def check_report(html: str | os.PathLike, min_images: int = MIN_IMAGES, browser: bool = True,
                 screenshot_png: str | os.PathLike | None = None) -> list[str]:
    """Every problem of the report ``html`` (empty list: it passes): the checks of the file
    (:func:`html_problems`) and, with ``browser``, Chromium's rendering (:func:`render_problems`).

    Raises :class:`repro.errors.ReproError` when ``html`` does not exist and :class:`BrowserMissing`
    when ``browser`` is asked for and no Chromium is installed."""
    html = Path(html)
    if not html.is_file():
        raise ReproError(f"{html}: no such report; build it with `make report`")
    problems = html_problems(html, min_images)
    if browser:
        with tempfile.TemporaryDirectory() as tmp:
            problems += render_problems(html, Path(screenshot_png) if screenshot_png else Path(tmp) / "report.png")
    return list(dict.fromkeys(problems))


OK_LINE = ("ok (self-contained, tidy tables, no absolute path, every figure decodes, has data and alt text"
           "{browser})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m repro.report.check", description=__doc__.splitlines()[0])
    ap.add_argument("html", nargs="+", help="report(s) to check")
    ap.add_argument("--screenshot", default=None, help="where to keep the screenshot (default: a temporary file)")
    ap.add_argument("--no-browser", action="store_true", help="only the checks of the file, no Chromium")
    ap.add_argument("--min-images", type=int, default=MIN_IMAGES,
                    help=f"fewest figures a report must hold (default {MIN_IMAGES})")
    args = ap.parse_args(argv)
    bad = 0
    for name in args.html:
        try:
            problems = check_report(name, args.min_images, not args.no_browser, args.screenshot)
        except ReproError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for p in problems:
            print(f"{name}: {p}")
        bad += bool(problems)
        if not problems:
            print(f"{name}: " + OK_LINE.format(browser="" if args.no_browser else "; Chromium renders it offline"))
    return 1 if bad else 0


if __name__ == "__main__":   # the one entry point is `python -m repro check-report`; this name forwards to it
    from repro.cli import main as cli_main

    sys.exit(cli_main(["check-report", *sys.argv[1:]]))
