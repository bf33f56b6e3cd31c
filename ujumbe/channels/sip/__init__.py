"""Voice calls over SIP: a caller (user agent client) with G.711 RTP, per carrier trunk."""

from ujumbe.channels.sip.trunk import SipTrunk, TrunkConfig

__all__ = ["SipTrunk", "TrunkConfig"]
