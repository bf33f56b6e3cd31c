"""The report's xlsx writer: what openpyxl (as a spreadsheet) reads back."""

from __future__ import annotations

import io
import zipfile

import openpyxl

from ujumbe.services.xlsx import SheetWriter


def read(data: bytes, read_only: bool) -> list[tuple[object, ...]]:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=read_only)
    assert book.sheetnames == ["report"]
    return list(book.worksheets[0].iter_rows(values_only=True))


def test_values_come_back_as_written() -> None:
    w = SheetWriter("report")
    w.append_rows([["id", "number", "text", "cost", "ok"]])
    w.append_rows([
        [1, "254708400000", "a & b <c> \"d\" 'e'", 1.5, True],
        [2, "0708400000", "=HYPERLINK(\"http://x\")", None, False],  # a value, never a formula
        [3, "  spaced  ", "Habari, umri 25 — ✓ नमस्ते", 10**15, None],
        [4, "bell\x07 and nul\x00 gone", "", float("nan"), -0.25],
    ])
    got = read(w.close(), read_only=True)
    assert got[0] == ("id", "number", "text", "cost", "ok")
    assert got[1] == (1, "254708400000", "a & b <c> \"d\" 'e'", 1.5, True)
    assert got[2] == (2, "0708400000", "=HYPERLINK(\"http://x\")", None, False)
    assert got[3] == (3, "  spaced  ", "Habari, umri 25 — ✓ नमस्ते", 10**15, None)
    assert got[4][:2] == (4, "bell and nul gone") and got[4][3] == "nan" and got[4][4] == -0.25


def test_many_rows_and_columns_in_full_mode_too() -> None:
    w = SheetWriter("report")
    rows = [[i, *(f"c{i}-{j}" for j in range(30))] for i in range(2000)]
    for k in range(0, len(rows), 500):
        w.append_rows(rows[k:k + 500])
    data = w.close()
    assert zipfile.ZipFile(io.BytesIO(data)).testzip() is None
    for mode in (True, False):
        got = read(data, read_only=mode)
        assert [list(r) for r in got] == rows  # column AE and beyond, every row in order
