"""SIP's text: digest answers (RFC 2617's own example), header grammar, SDP answers."""

from __future__ import annotations

from ujumbe.channels.sip import digest, sdp
from ujumbe.channels.sip.message import NameAddr, frame_length, parse, split_commas


def test_digest_matches_rfc_2617s_example() -> None:
    challenge = digest.parse_challenge('Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                       'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                                       'opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    value = digest.authorization(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                                 password="Circle Of Life", cnonce="0a4f113b")
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "nc=00000001" in value and 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


def test_compact_forms_folding_and_lists() -> None:
    raw = (b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a.example:5060;branch=z9hG4bK1;rport=5062;received=1.2.3.4\r\n"
           b"v: SIP/2.0/UDP b.example;branch=z9hG4bK2\r\nf: \"A, B\" <sip:a@x>;tag=1\r\nt: <sip:b@y>\r\n"
           b" ;tag=2\r\ni: abc\r\nCSeq: 3 INVITE\r\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\r\n"
           b"Record-Route: <sip:p3;lr>\r\nl: 4\r\n\r\nbodyEXTRA")
    msg = parse(raw)
    assert msg.status == 200 and msg.call_id == "abc" and msg.cseq == (3, "INVITE")
    assert msg.top_via.params["rport"] == "5062" and msg.top_via.params["received"] == "1.2.3.4"
    assert len(msg.get_all("via")) == 2
    assert msg.from_.display == "A, B" and msg.from_.tag == "1" and msg.to.tag == "2"
    assert msg.get_all("record-route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    assert msg.body == b"body"
    assert frame_length(raw) == len(raw) - 5 and frame_length(raw[:-7]) is None  # TCP framing by l:
    assert split_commas('"x, y" <sip:a>, <sip:b;p="1,2">') == ['"x, y" <sip:a>', '<sip:b;p="1,2">']
    assert NameAddr.parse("sip:u@h;tag=9").tag == "9"


def test_sdp_answer_picks_the_first_codec_we_offered() -> None:
    answer = sdp.parse_answer(b"v=0\r\no=- 1 1 IN IP4 9.9.9.9\r\ns=-\r\nc=IN IP4 9.9.9.9\r\nt=0 0\r\n"
                              b"m=audio 4000 RTP/AVP 18 0 8 97\r\nc=IN IP4 10.0.0.1\r\n"
                              b"a=rtpmap:97 telephone-event/8000\r\n")
    assert answer is not None and (answer.host, answer.port) == ("10.0.0.1", 4000)
    assert answer.codec(("PCMA", "PCMU")) == ("PCMU", 0)  # the answer's order decides
    assert answer.dtmf_pt() == 97
    assert sdp.parse_answer(b"v=0\r\nm=video 5000 RTP/AVP 96\r\n") is None
