"""The HTML report: values from run folders escaped everywhere, failed cells styled alike, contention said."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from bench.analysis.report import build_report
from bench.render.html import to_html
from bench.results.store import load_run
from tests.bench.analysis.test_compare import cell, lognormal, make_run


class _Elements(HTMLParser):
    """Every start tag with its attributes, and the classes of the cells holding each text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.cell_classes: dict[str, set[str]] = {}
        self._class: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._class = (dict(attrs).get("class") or "") if tag == "td" else None

    def handle_data(self, data: str) -> None:
        if self._class is not None:
            self.cell_classes.setdefault(data, set()).add(self._class)
            self._class = None


def _page(tmp_path: Path, rows: list[dict[str, Any]], env: dict[str, Any] | None = None) -> str:
    samples = {r["cell_id"]: lognormal(20, 5.0, 0.02, r["cell_id"]) for r in rows if r["status"] == "ok"}
    return to_html(build_report([load_run(make_run(tmp_path / "run", rows, samples, env))]))


def test_names_from_a_run_folder_cannot_add_elements_or_attributes(tmp_path: Path) -> None:
    evil = '"><script>alert(1)</script>'
    rows = [
        cell(0, host=evil, device_name="<img src=x onerror=alert(1)>", model='m"><svg onload=alert(1)>'),
        cell(1, host=evil, pipeline="int8", status="error", reason="<iframe src=//x>"),
    ]
    page = _page(tmp_path, rows, {"run_id": "<b>r</b>", "hostname": evil, "device": "cpu"})
    parsed = _Elements()
    parsed.feed(page)
    tags = {tag for tag, _ in parsed.tags}
    assert not tags & {"script", "img", "svg", "iframe", "b"}
    assert all(not any(name.startswith("on") for name in attrs) for _, attrs in parsed.tags)
    ids = [attrs["id"] for _, attrs in parsed.tags if attrs.get("id")]
    assert all(
        set(i) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") for i in ids
    ), ids


def test_crashed_and_timeout_are_styled_like_error_and_contention_is_said(tmp_path: Path) -> None:
    rows = [
        cell(0, contended=True),
        cell(1, pipeline="compile", status="crashed", reason="worker killed by SIGSEGV"),
        cell(2, pipeline="int8", status="timeout", reason="worker ran past 300 s"),
        cell(3, pipeline="bf16", precision="bf16", status="error", reason="boom"),
    ]
    page = _page(tmp_path, rows)
    parsed = _Elements()
    parsed.feed(page)
    classes = parsed.cell_classes
    for status in ("crashed", "timeout", "error"):  # in the status column, wherever else they appear
        assert "status-failed" in classes[status], status
    assert classes["ok (contended)"] == {"status-flagged"}
    assert "1 of 4 cells were contended" in page
