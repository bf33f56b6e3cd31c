"""SDP (RFC 4566) offer and answer for one audio stream: G.711 and RFC 4733 events."""

from __future__ import annotations

from dataclasses import dataclass, field

STATIC = {"PCMU": 0, "PCMA": 8}
NAMES = {0: "PCMU", 8: "PCMA"}


def offer(*, host: str, port: int, codecs: tuple[str, ...], session_id: int, dtmf_pt: int = 101) -> bytes:
    pts = [STATIC[c] for c in codecs]
    lines = [
        "v=0",
        f"o=ujumbe {session_id} {session_id} IN IP4 {host}",
        "s=ujumbe",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(str(p) for p in pts + [dtmf_pt])}",
    ]
    lines += [f"a=rtpmap:{p} {NAMES[p]}/8000" for p in pts]
    lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} 0-16", "a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


@dataclass(slots=True)
class Answer:
    host: str = ""
    port: int = 0
    payloads: list[int] = field(default_factory=list)
    rtpmap: dict[int, str] = field(default_factory=dict)  # pt -> "NAME/rate" upper-cased name
    direction: str = "sendrecv"

    def codec(self, offered: tuple[str, ...]) -> tuple[str, int] | None:
        """The first payload of the answer that we offered, as (name, pt)."""
        for pt in self.payloads:
            name = self.rtpmap.get(pt, "").split("/")[0] or NAMES.get(pt, "")
            if name in offered and (pt in NAMES or self.rtpmap.get(pt, "").endswith("/8000")):
                return name, pt
        return None

    def dtmf_pt(self) -> int | None:
        for pt in self.payloads:
            if self.rtpmap.get(pt, "").startswith("TELEPHONE-EVENT/8000"):
                return pt
        return None


def parse_answer(body: bytes) -> Answer | None:
    """The first audio stream of an SDP body; None when there is none."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    ans = Answer()
    session_host = ""
    media_host = ""
    in_audio = False
    seen_audio = False
    for raw in text.splitlines():
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:]
        if kind == "m":
            if seen_audio:
                in_audio = False
                break
            parts = value.split()
            in_audio = len(parts) >= 3 and parts[0] == "audio"
            if in_audio:
                seen_audio = True
                ans.port = int(parts[1].split("/")[0]) if parts[1].split("/")[0].isdigit() else 0
                ans.payloads = [int(p) for p in parts[3:] if p.isdigit()]
        elif kind == "c":
            parts = value.split()
            host = parts[2].split("/")[0] if len(parts) >= 3 else ""
            if in_audio:
                media_host = host
            elif not seen_audio:
                session_host = host
        elif kind == "a" and (in_audio or not seen_audio):
            if value.startswith("rtpmap:") and in_audio:
                pt, _, enc = value[7:].partition(" ")
                if pt.isdigit():
                    ans.rtpmap[int(pt)] = enc.strip().upper()
            elif value in ("sendrecv", "sendonly", "recvonly", "inactive"):
                ans.direction = value
    if not seen_audio:
        return None
    ans.host = media_host or session_host
    return ans
