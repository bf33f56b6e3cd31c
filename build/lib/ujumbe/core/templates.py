"""Message templates with ``${name}`` and ``{name}`` placeholders.

Both forms exist because clients migrate from providers that use either. Names
are flat keys (``user.name`` is looked up as the literal key "user.name"), and
anything that does not look like a placeholder (``{ }``, ``{1a}``, JSON) is
left exactly as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
# The '$' form is tried first at each position so "${x}" is one placeholder,
# not a literal '$' followed by "{x}".
_PLACEHOLDER_RE = re.compile(r"\$\{(" + _NAME + r")\}|\{(" + _NAME + r")\}")


class TemplateError(ValueError):
    def __init__(self, missing: list[str]) -> None:
        self.missing = missing
        super().__init__("template parameters missing: " + ", ".join(missing))


def placeholders(template: str) -> list[str]:
    """Placeholder names in order of first appearance, each once."""
    if "{" not in template:
        return []  # most texts are plain: no regex for them (every send asks)
    seen: dict[str, None] = {}  # dict keeps insertion order; a set would not
    for m in _PLACEHOLDER_RE.finditer(template):
        seen.setdefault(m.group(1) or m.group(2), None)
    return list(seen)


def render(template: str, params: Mapping[str, object]) -> str:
    missing = [name for name in placeholders(template) if name not in params]
    if missing:
        raise TemplateError(missing)

    def _value(m: re.Match[str]) -> str:
        value = params[m.group(1) or m.group(2)]
        return "" if value is None else str(value)

    return _PLACEHOLDER_RE.sub(_value, template)
