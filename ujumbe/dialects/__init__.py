"""API dialects: one module per provider, translating wire formats to
services and back. Each module exposes ``routes()``; importing it registers
its callback formats. Add a dialect by listing its module here."""

from ujumbe.dialects import messangi, native, native_premium, native_verify, smpp, tilil, tingg  # noqa: F401  (native_premium and native_verify add /v1 routes)
from ujumbe.dialects import native_campaigns, tingting  # noqa: F401  (native_campaigns adds /v1 campaign routes)
from ujumbe.dialects import native_speech  # noqa: F401  (adds /v1 audio and voice routes)

MODULES = [native, tingg, smpp, tilil, messangi, tingting]
