"""API dialects: one module per provider, translating wire formats to
services and back. Importing this package registers every dialect's
callback formats."""

from ujumbe.dialects import native  # noqa: F401
