"""API dialects: one module per provider, translating wire formats to
services and back. Each module exposes ``routes()``; importing it registers
its callback formats. Add a dialect by listing its module here."""

from ujumbe.dialects import native

MODULES = [native]
