"""What a sender sees on the bill: encoding choice and part counts."""

from __future__ import annotations

import random

import pytest

from ujumbe.core.encoding import (
    GSM7,
    GSM_ALL,
    UCS2,
    MessageTooLong,
    check_length,
    count_parts,
    decode_part,
    detect_encoding,
    encode_part,
    segment,
)

EXTENSION = "\f^{}\\[~]|€"
EMOJI = "😀"  # above the BMP: a surrogate pair in UTF-16


def _units_gsm(part: str) -> int:
    return sum(2 if ch in EXTENSION else 1 for ch in part)


def _units_ucs2(part: str) -> int:
    return len(part.encode("utf-16-be")) // 2


# --- detection -----------------------------------------------------------------


def test_plain_text_is_gsm7() -> None:
    assert detect_encoding("Your code is 1234. Karibu!") == GSM7


def test_gsm_accented_and_greek_letters_stay_gsm7() -> None:
    assert detect_encoding("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà") == GSM7


def test_extension_chars_stay_gsm7() -> None:
    assert detect_encoding("Pay €5 {now} [ok] ~ | \\ ^") == GSM7


@pytest.mark.parametrize("odd", ["Ж", EMOJI, "`", "ç", "\x1b", "ą"])
def test_one_foreign_char_switches_whole_message_to_ucs2(odd: str) -> None:
    text = "Hello " * 20 + odd
    seg = segment(text)
    assert seg.encoding == UCS2
    assert detect_encoding(text) == UCS2
    assert count_parts(text)[0] == UCS2


def test_empty_text_is_one_part_zero_units() -> None:
    seg = segment("")
    assert seg.parts == ("",)
    assert seg.units == 0
    assert seg.chars == 0
    assert count_parts("") == (GSM7, 1)


# --- GSM-7 part counts ---------------------------------------------------------


def test_160_gsm_chars_is_one_part_161_is_two() -> None:
    assert len(segment("a" * 160).parts) == 1
    assert count_parts("a" * 160) == (GSM7, 1)
    seg = segment("a" * 161)
    assert len(seg.parts) == 2
    assert [len(p) for p in seg.parts] == [153, 8]
    assert count_parts("a" * 161) == (GSM7, 2)


def test_two_full_concatenated_parts() -> None:
    assert count_parts("a" * 306) == (GSM7, 2)
    assert count_parts("a" * 307) == (GSM7, 3)
    assert [len(p) for p in segment("a" * 306).parts] == [153, 153]


@pytest.mark.parametrize("ext", list(EXTENSION))
def test_extension_char_costs_two_septets(ext: str) -> None:
    seg = segment("a" * 10 + ext)
    assert seg.encoding == GSM7
    assert seg.units == 12
    assert seg.chars == 11


def test_extension_chars_tip_a_single_sms_into_two() -> None:
    assert count_parts("a" * 158 + "€") == (GSM7, 1)  # 160 septets
    assert count_parts("a" * 159 + "€") == (GSM7, 2)  # 161 septets


@pytest.mark.parametrize("ext", ["€", "{"])
def test_escape_pair_at_part_boundary_moves_to_next_part(ext: str) -> None:
    # 152 septets, then the pair would occupy septets 153 and 154: it must move.
    text = "a" * 152 + ext + "b" * 20
    seg = segment(text)
    assert seg.parts[0] == "a" * 152
    assert seg.parts[1].startswith(ext)
    assert "".join(seg.parts) == text
    assert seg.units == 152 + 2 + 20
    assert count_parts(text) == (GSM7, len(seg.parts))


def test_escape_pair_that_just_fits_stays() -> None:
    text = "a" * 151 + "€" + "b" * 20
    seg = segment(text)
    assert seg.parts[0] == "a" * 151 + "€"
    assert _units_gsm(seg.parts[0]) == 153


def test_boundary_shift_can_add_a_part() -> None:
    # 306 septets would be two full parts, but the pair at 153/154 moves and
    # pushes the last septet into a third part.
    text = "a" * 152 + "€" + "b" * 152
    assert _units_gsm(text) == 306
    seg = segment(text)
    assert len(seg.parts) == 3
    assert count_parts(text) == (GSM7, 3)


def test_all_extension_text() -> None:
    text = "€" * 200
    seg = segment(text)
    assert seg.units == 400
    assert all(_units_gsm(p) <= 153 for p in seg.parts)
    assert [len(p) for p in seg.parts] == [76, 76, 48]
    assert count_parts(text) == (GSM7, 3)


# --- UCS-2 part counts ---------------------------------------------------------


def test_70_ucs2_units_is_one_part_71_is_two() -> None:
    assert count_parts("Ж" * 70) == (UCS2, 1)
    seg = segment("Ж" * 71)
    assert seg.encoding == UCS2
    assert [len(p) for p in seg.parts] == [67, 4]
    assert count_parts("Ж" * 71) == (UCS2, 2)


def test_emoji_counts_two_units() -> None:
    seg = segment("hi " + EMOJI)
    assert seg.units == 5
    assert seg.chars == 4
    assert count_parts(EMOJI * 35) == (UCS2, 1)  # 70 units
    assert count_parts(EMOJI * 35 + "a") == (UCS2, 2)


def test_emoji_at_67_unit_boundary_is_not_split() -> None:
    text = "Ж" * 66 + EMOJI + "Ж" * 10
    seg = segment(text)
    assert seg.parts[0] == "Ж" * 66
    assert seg.parts[1].startswith(EMOJI)
    assert "".join(seg.parts) == text
    for part in seg.parts:
        assert _units_ucs2(part) <= 67
        part.encode("utf-16-be")  # a split surrogate would not encode
    assert count_parts(text) == (UCS2, len(seg.parts))


def test_force_ucs2() -> None:
    seg = segment("hello", force=UCS2)
    assert seg.encoding == UCS2
    assert seg.units == 5


def test_force_gsm7_on_non_gsm_text_is_refused() -> None:
    with pytest.raises(ValueError):
        segment("Жук", force=GSM7)


# --- count_parts agrees with segment --------------------------------------------

_ALPHABETS = {
    "ascii": "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,!?",
    "gsm_ext": "abc {}[]€~^|\\\f",
    "gsm_mixed": "aé@£Δ_ΦÄÖÑÜ§€{ ",
    "ext_heavy": "€{}",
    "cyrillic": "абвгдежз Ж ",
    "emoji": "a😀🇰🇪 ",
    "emoji_heavy": "😀🙏",
    "ucs2_mixed": "aЖ€{😀 é",
}


def test_count_parts_matches_segment_on_many_generated_texts() -> None:
    rng = random.Random(20240607)
    lengths = list(range(0, 330)) + [400, 459, 460, 461, 612, 765, 918, 919, 920]
    checked = 0
    for name, alphabet in _ALPHABETS.items():
        for length in lengths:
            for _ in range(2):
                text = "".join(rng.choice(alphabet) for _ in range(length))
                seg = segment(text)
                assert count_parts(text) == (seg.encoding, len(seg.parts)), (name, length, text)
                assert "".join(seg.parts) == text
                per_part = (153 if seg.encoding == GSM7 else 67) if len(seg.parts) > 1 else None
                measure = _units_gsm if seg.encoding == GSM7 else _units_ucs2
                assert sum(measure(p) for p in seg.parts) == seg.units
                if per_part is not None:
                    assert all(measure(p) <= per_part for p in seg.parts)
                    # Greedy: no part could have taken the next char of the following one.
                    for a, b in zip(seg.parts, seg.parts[1:]):
                        assert measure(a) + measure(b[0]) > per_part
                checked += 1
    assert checked > 5000


# --- encode / decode -------------------------------------------------------------


def test_encode_gsm_extension_as_escape_pairs() -> None:
    assert encode_part("€", GSM7) == b"\x1b\x65"
    assert encode_part("{}", GSM7) == b"\x1b\x28\x1b\x29"
    assert encode_part("@a", GSM7) == b"\x00a"


def test_encode_gsm7_gives_the_codecs_bytes_for_every_gsm_character() -> None:
    # encode_part has its own table (a translate); the gsm0338 codec stays the source of truth
    for ch in sorted(GSM_ALL):
        assert encode_part(ch, GSM7) == ch.encode("gsm03.38"), repr(ch)
    text = "".join(sorted(GSM_ALL)) * 3
    assert encode_part(text, GSM7) == text.encode("gsm03.38")


def test_round_trip_extension_table() -> None:
    text = "Price: €10 {promo} [x] ~ | \\ ^ \f end"
    data = encode_part(text, GSM7)
    assert len(data) == segment(text).units  # one byte per septet, unpacked
    assert decode_part(data, GSM7) == text


def test_round_trip_every_part_of_a_long_gsm_message() -> None:
    text = ("a" * 152 + "€") * 3
    parts = segment(text).parts
    assert "".join(decode_part(encode_part(p, GSM7), GSM7) for p in parts) == text
    assert all(len(encode_part(p, GSM7)) <= 153 for p in parts)


def test_round_trip_ucs2_with_emoji() -> None:
    text = "Habari Ж " + EMOJI
    data = encode_part(text, UCS2)
    assert data == text.encode("utf-16-be")
    assert decode_part(data, UCS2) == text


def test_encode_gsm7_refuses_non_gsm_text() -> None:
    with pytest.raises(ValueError):
        encode_part("Ж", GSM7)
    with pytest.raises(ValueError):
        encode_part("\x1b", GSM7)  # a lone ESC would corrupt the next character


def test_decode_unknown_extension_code_falls_back_to_basic_char() -> None:
    # TS 23.038: show the basic-table character for an undefined extension code.
    assert decode_part(b"\x1b" + b"A", GSM7) == "A"


def test_decode_latin1_and_ascii() -> None:
    assert decode_part("café".encode("latin-1"), "latin1") == "café"
    assert decode_part(b"hello", "ascii") == "hello"


def test_unknown_encoding_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_part("x", "utf8")
    with pytest.raises(ValueError):
        decode_part(b"x", "ebcdic")


# --- length limit ------------------------------------------------------------------


def test_920_chars_is_allowed_921_is_too_long() -> None:
    check_length("a" * 920)
    with pytest.raises(MessageTooLong) as err:
        check_length("a" * 921)
    assert err.value.limit == 920
    assert err.value.length == 921
    assert isinstance(err.value, ValueError)


def test_length_limit_counts_characters_not_units() -> None:
    check_length(EMOJI * 920)
    with pytest.raises(MessageTooLong):
        check_length("a" * 11, max_chars=10)
