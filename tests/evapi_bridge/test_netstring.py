"""The netstring codec: round trips, split and merged frames, every malformed case."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evapi_bridge.netstring import FrameError, NetstringDecoder, encode


def test_it_encodes_a_payload_as_length_colon_payload_comma():
    assert encode(b"hello world!") == b"12:hello world!,"
    assert encode(b"") == b"0:,"


@pytest.mark.parametrize(
    "payload", [b"", b"x", b'{"event":"sip-routing","tindex":1}', b"a,b:c", "é☎".encode()]
)
def test_it_round_trips_a_payload(payload):
    assert NetstringDecoder().feed(encode(payload)) == [payload]


def test_it_returns_every_frame_of_a_merged_read_in_order():
    stream = encode(b"one") + encode(b"two") + encode(b"") + encode(b"three")
    assert NetstringDecoder().feed(stream) == [b"one", b"two", b"", b"three"]


def test_it_waits_for_the_rest_of_a_split_frame():
    decoder = NetstringDecoder()
    assert decoder.feed(b"1") == []
    assert decoder.feed(b"1:hello") == []
    assert decoder.feed(b" world") == []
    assert decoder.buffered == len(b"11:hello world")
    assert decoder.feed(b",5:ab") == [b"hello world"]
    assert decoder.feed(b"cde,") == [b"abcde"]
    assert decoder.buffered == 0


def test_it_feeds_one_byte_at_a_time():
    decoder = NetstringDecoder()
    stream = encode(b"first") + encode(b"second")
    frames = [frame for byte in stream for frame in decoder.feed(bytes([byte]))]
    assert frames == [b"first", b"second"]


def test_it_skips_whitespace_between_frames_like_kamailio():
    assert NetstringDecoder().feed(b"\r\n3:abc,\n 2:de,\t") == [b"abc", b"de"]


def test_it_accepts_a_frame_of_exactly_the_maximum_size():
    assert NetstringDecoder(max_frame=5).feed(b"5:abcde,") == [b"abcde"]


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"abc:hello,", "expected a length digit or ':', got b'a'"),
        (b'{"event":1}', "expected a length digit or ':', got b'{'"),
        (b"3x:abc,", "got b'x'"),
        (b":abc,", "empty length prefix"),
        (b"-3:abc,", "got b'-'"),
        (b"03:abc,", "leading zero"),
        (b"3:abcd,", "does not end with ','"),
        (b"3:abc;", "does not end with ','"),
        (b"3:abc,junk", "got b'j'"),
        (b"101:", "over the maximum of 100"),
        (b"1000", "longer than 3 digits"),
        (b"12345678901234567890:", "longer than 3 digits"),
    ],
)
def test_it_rejects_a_malformed_stream_with_a_clear_error(stream, message):
    decoder = NetstringDecoder(max_frame=100)
    with pytest.raises(FrameError, match="bad netstring at byte") as error:
        decoder.feed(stream)
    assert message in str(error.value)


def test_it_rejects_an_oversize_frame_before_it_arrives():
    decoder = NetstringDecoder(max_frame=1024)
    with pytest.raises(FrameError, match="frame of 2000 bytes is over the maximum of 1024"):
        decoder.feed(b"2000:")
    with pytest.raises(FrameError, match="longer than 4 digits: frame over the maximum"):
        NetstringDecoder(max_frame=1024).feed(b"99999")


def test_it_reports_the_error_position_in_the_whole_stream():
    decoder = NetstringDecoder()
    assert decoder.feed(b"2:ok,") == [b"ok"]
    with pytest.raises(FrameError, match="at byte 5:"):
        decoder.feed(b"x")


def test_it_stays_broken_after_a_framing_error():
    """The stream cannot be resynchronised: the caller must reset the connection."""
    decoder = NetstringDecoder()
    with pytest.raises(FrameError):
        decoder.feed(b"2:abc,")
    with pytest.raises(FrameError):
        decoder.feed(b"2:ok,")


def test_it_hands_over_the_frames_that_came_before_the_error_in_the_same_read():
    """Their events can still be answered before the connection is reset."""
    decoder = NetstringDecoder()
    with pytest.raises(FrameError) as error:
        decoder.feed(b"2:ok,3:yes,!")
    assert error.value.frames == [b"ok", b"yes"]
    with pytest.raises(FrameError) as again:
        decoder.feed(b"2:no,")
    assert again.value.frames == []


def test_it_refuses_a_maximum_below_one_byte():
    with pytest.raises(ValueError, match="at least 1 byte"):
        NetstringDecoder(max_frame=0)


payloads = st.lists(st.binary(max_size=300), max_size=30)


@given(payloads=payloads, data=st.data())
def test_any_chunking_of_a_valid_stream_gives_back_the_same_payloads(payloads, data):
    stream = b"".join(encode(payload) for payload in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = NetstringDecoder(max_frame=300)
    decoded = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoded.extend(decoder.feed(stream[start:end]))
    assert decoded == payloads
    assert decoder.buffered == 0
