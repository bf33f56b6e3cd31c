"""A streaming xlsx writer for reports: one sheet of plain values.

openpyxl's write-only workbook spends ~12 us of CPU a cell on its cell
objects and XML serializer (two thirds of a 100,000-row campaign report); a
report needs none of what they offer (styles, formulas, merged cells), so its
rows are written here as SpreadsheetML text straight into the zip. Strings are
inline (no shared-string table to keep in memory) and always text: a value
starting with "=" stays a value, never a formula.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from xml.sax.saxutils import escape

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

# characters XML 1.0 cannot carry at all (openpyxl refuses them); dropped
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
MAX_TEXT = 32767  # Excel's limit for one cell


def _column(i: int) -> str:
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(65 + r) + name
    return name


def _text(value: str) -> str:
    if _ILLEGAL.search(value):
        value = _ILLEGAL.sub("", value)
    value = escape(value[:MAX_TEXT])
    if value[:1].isspace() or value[-1:].isspace():
        return f'<is><t xml:space="preserve">{value}</t></is>'
    return f"<is><t>{value}</t></is>"


class SheetWriter:
    """Rows appended to one sheet named ``title``; ``close`` gives the file."""

    def __init__(self, title: str = "Sheet1") -> None:
        self._buf = io.BytesIO()
        self._zip = zipfile.ZipFile(self._buf, "w", zipfile.ZIP_DEFLATED)
        self._title = escape(title[:31], {'"': "&quot;"})
        self._sheet = self._zip.open("xl/worksheets/sheet1.xml", "w", force_zip64=True)
        self._sheet.write(f'{_HEAD}<worksheet xmlns="{_MAIN}"><sheetData>'.encode())
        self._row = 0
        self._columns: list[str] = []

    def append_rows(self, rows: Iterable[Sequence[object]]) -> None:
        parts: list[str] = []
        columns = self._columns
        n = self._row
        for row in rows:
            n += 1
            if len(row) > len(columns):
                columns.extend(_column(i) for i in range(len(columns), len(row)))
            parts.append(f'<row r="{n}">')
            last = len(row) - 1
            for i, v in enumerate(row):
                if v is None:
                    if i == last:  # an empty last cell keeps the row as wide as it was written
                        parts.append(f'<c r="{columns[i]}{n}"/>')
                    continue
                ref = f"{columns[i]}{n}"
                if isinstance(v, bool):
                    parts.append(f'<c r="{ref}" t="b"><v>{int(v)}</v></c>')
                elif isinstance(v, (int, float)) and not (isinstance(v, float) and not math.isfinite(v)):
                    parts.append(f'<c r="{ref}"><v>{v!r}</v></c>')
                else:
                    parts.append(f'<c r="{ref}" t="inlineStr">{_text(str(v))}</c>')
            parts.append("</row>")
        self._row = n
        self._sheet.write("".join(parts).encode())

    def close(self) -> bytes:
        self._sheet.write(b"</sheetData></worksheet>")
        self._sheet.close()
        z = self._zip
        z.writestr("[Content_Types].xml", (
            f'{_HEAD}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            '<Override PartName="/xl/styles.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/></Types>'))
        z.writestr("_rels/.rels", (
            f'{_HEAD}<Relationships xmlns="{_PKG_REL}"><Relationship Id="rId1" '
            f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>'))
        z.writestr("xl/workbook.xml", (
            f'{_HEAD}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
            f'<sheet name="{self._title}" sheetId="1" r:id="rId1"/></sheets></workbook>'))
        z.writestr("xl/_rels/workbook.xml.rels", (
            f'{_HEAD}<Relationships xmlns="{_PKG_REL}">'
            f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{_REL}/styles" Target="styles.xml"/></Relationships>'))
        z.writestr("xl/styles.xml", (
            f'{_HEAD}<styleSheet xmlns="{_MAIN}">'
            '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
            '<fills count="2"><fill><patternFill patternType="none"/></fill>'
            '<fill><patternFill patternType="gray125"/></fill></fills>'
            '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
            '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
            '<cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
            '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles></styleSheet>'))
        z.close()
        return self._buf.getvalue()
