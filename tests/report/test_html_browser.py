"""report.html opened from disk in headless Chromium: no console errors, a table and a decoded
plot per use case and metric, and a screenshot in which both are drawn."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sparsify.report import build_report
from tests.report.cdp import Browser, find_chromium
from tests.report.fabricate import fake_run, make_sweep_root

WIDTH, HEIGHT = 1200, 1600


def _install_chromium() -> str:
    """Try what `make chromium` does; the reason it could not, or ''."""
    if shutil.which("apt-get") is None:
        return "no apt-get on this machine; install Chromium with the system's package manager"
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install it; run `sudo make chromium`"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if proc.returncode != 0:
            return f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}"
    return ""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        why = _install_chromium()
        binary = find_chromium()
        if binary is None:
            pytest.skip(f"chromium is not installed and could not be installed: {why}")
    session = Browser(binary, tmp_path_factory.mktemp("chromium-profile"), WIDTH, HEIGHT)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs, two use cases: a two-job image-classification sweep and one NER run."""
    root = tmp_path_factory.mktemp("runs")
    sweep = make_sweep_root(root / "multirun" / "2026-05-01_12-00-00")
    for job, (level, acc, lat) in enumerate([(0.0, 90.0, 10.0), (0.5, 88.5, 6.0)]):
        name = f"{job}_cv-classification_one_shot_level-{level}"
        fake_run(sweep / name, "cv-classification", "flowers", level, acc, lat)
    fake_run(
        root / "one_shot_ner" / "2026-05-02_09-00-00",
        "nlp-named_entity_recognition",
        "conll_tiny",
        0.5,
        81.0,
        20.0,
        dense=(85.0, 31.0),
        model_arch="bert",
    )
    build_report(root)
    return root


SECTIONS = """[...document.querySelectorAll('section.group')].map(s => ({
  title: s.querySelector('h2').textContent,
  headers: [...s.querySelectorAll('thead th')].map(t => t.textContent),
  rows: [...s.querySelectorAll('tbody tr')].map(tr => [...tr.cells].map(c => c.textContent)),
  img: [...s.querySelectorAll('img')].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
}))"""

RECTS = """(() => {
  const box = el => { const r = el.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom]; };
  const s = document.querySelector('section.group');
  return {table: box(s.querySelector('table')), img: box(s.querySelector('img')),
          width: window.innerWidth, height: window.innerHeight,
          page: [document.documentElement.scrollWidth, document.documentElement.clientWidth]};
})()"""


def _cells(section: dict[str, Any]) -> list[dict[str, str]]:
    return [dict(zip(section["headers"], row, strict=True)) for row in section["rows"]]


def test_report_has_a_table_and_a_decoded_plot_per_use_case(
    browser: Browser, report_dir: Path
) -> None:
    browser.open((report_dir / "report.html").as_uri())
    assert browser.errors == []
    cls, ner = browser.evaluate(SECTIONS)
    assert cls["title"] == "cv-classification: top1"
    assert ner["title"] == "nlp-named_entity_recognition: entity_f1"
    assert "top1 (dense)" in cls["headers"] and "entity_f1 (dense)" in ner["headers"]
    assert cls["headers"][:3] == ["run", "use case", "data"]
    rows = _cells(cls)
    assert [r["run"] for r in rows] == [
        "0_cv-classification_one_shot_level-0.0",
        "1_cv-classification_one_shot_level-0.5",
    ]
    assert {r["data"] for r in rows} == {"flowers"} and rows[1]["top1 (dense)"] == "88.5 (90.0)"
    (ner_row,) = _cells(ner)
    assert ner_row["run"] == "one_shot_ner/2026-05-02_09-00-00"  # not a sweep: its path
    assert (ner_row["use case"], ner_row["data"]) == ("nlp-named_entity_recognition", "conll_tiny")
    assert ner_row["entity_f1 (dense)"] == "81.0 (85.0)"
    for section in (cls, ner):  # the embedded PNG decoded in the browser
        ((complete, width, height),) = section["img"]
        assert complete and width > 400 and height > 300


def _ink(image: Image.Image, box: tuple[float, float, float, float]) -> tuple[float, float]:
    """(fraction of pixels that are not near-white, fraction that are coloured) in `box`."""
    region = image.crop(tuple(round(v) for v in box)).convert("RGB")  # type: ignore[arg-type]
    pixels = list(region.getdata())
    inked = sum(min(p) < 200 for p in pixels)
    coloured = sum(max(p) - min(p) > 60 for p in pixels)
    return inked / len(pixels), coloured / len(pixels)


def test_screenshot_shows_the_table_and_the_plot(
    browser: Browser, report_dir: Path, tmp_path: Path
) -> None:
    browser.open((report_dir / "report.html").as_uri())
    rects = browser.evaluate(RECTS)
    shot = Image.open(browser.screenshot(tmp_path / "report.png"))
    scale = shot.width / rects["width"]
    assert shot.height == round(rects["height"] * scale)
    table, img = ([v * scale for v in rects[k]] for k in ("table", "img"))
    # both lie in the first screenful at the window size people open it in
    assert table[3] <= shot.height and img[3] <= shot.height and img[1] >= table[3]
    table_ink, _ = _ink(shot, table)
    plot_ink, plot_colour = _ink(shot, img)
    assert table_ink > 0.05  # borders, header shading and text
    assert plot_ink > 0.02 and plot_colour > 0.001  # axes and labels; the blue / red markers
    # a wide table scrolls in its own box: the page itself needs no sideways scrolling
    scroll_width, client_width = rects["page"]
    assert scroll_width <= client_width
    assert table[2] <= client_width * scale, "the table's last columns are cut off at 1200 px"
    margin = (img[2] + 20, img[1], client_width * scale, img[3])  # page background
    assert _ink(shot, margin) == (0.0, 0.0), "the screenshot is not the page as laid out"


def test_console_errors_are_caught(browser: Browser, tmp_path: Path) -> None:
    """The no-errors assertion above can fail: a broken page does report errors here."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><p>x</p><script>console.error('bad thing');"
        "undefinedFunction();</script></body></html>"
    )
    browser.open(page.as_uri())
    assert any("bad thing" in e for e in browser.errors)
    assert any("undefinedFunction" in e for e in browser.errors)
