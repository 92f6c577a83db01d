from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync_protocol.discovery import (
    MAX_RACES,
    MAX_TXT_STRING,
    SERVICE_TYPE,
    RelayAdvert,
    check_interfaces,
    decode_race_ids,
    encode_race_ids,
)
from sync_protocol.errors import DecodeError, LimitExceeded, LocalProtocolError

HASH = "ab" * 32


def advert(**changes: object) -> RelayAdvert:
    fields: dict[str, object] = {
        "name": "Galibier summit",
        "addresses": ("192.0.2.7", "2001:db8::7"),
        "quic_port": 4433,
        "http_port": 8080,
        "race_ids": (3, 7, 8, 9, 10, 40),
        "cert_sha256": HASH,
        "version": 1,
    }
    fields.update(changes)
    return RelayAdvert(**fields)  # type: ignore[arg-type]


def as_txt(props: dict[str, str]) -> dict[bytes, bytes | None]:
    """What zeroconf hands a browser: the TXT properties as bytes."""
    return {k.encode(): v.encode() for k, v in props.items()}


def reparse(a: RelayAdvert) -> RelayAdvert:
    return RelayAdvert.from_properties(
        a.name, list(a.addresses), a.quic_port, as_txt(a.to_properties())
    )


def test_service_type_is_a_udp_dns_sd_type() -> None:
    assert SERVICE_TYPE == "_gruppetto._udp.local."


def test_properties_are_compact_and_round_trip() -> None:
    a = advert()
    assert a.to_properties() == {"v": "1", "http": "8080", "races": "3,7-10,40", "cert": HASH}
    assert reparse(a) == a


def test_ca_signed_relay_has_no_cert_key() -> None:
    a = advert(cert_sha256="", race_ids=())
    assert a.to_properties() == {"v": "1", "http": "8080", "races": ""}
    assert reparse(a) == a


def test_fields_are_normalised() -> None:
    a = advert(
        race_ids=(9, 3, 3), addresses=("2001:DB8:0::7", "2001:db8::7"), cert_sha256=HASH.upper()
    )
    assert a.race_ids == (3, 9)
    assert a.addresses == ("2001:db8::7",)
    assert a.cert_sha256 == HASH


def test_urls() -> None:
    a = advert()
    assert a.quic_url() == "https://192.0.2.7:4433"
    assert a.page_url() == "http://192.0.2.7:8080/"
    v6 = advert(addresses=("::1",))
    assert v6.quic_url() == "https://[::1]:4433"
    assert v6.page_url() == "http://[::1]:8080/"
    assert a.quic_url("relay.example.org") == "https://relay.example.org:4433"
    scoped = advert(addresses=("fe80::1%eth0",))
    assert scoped.page_url() == "http://[fe80::1%25eth0]:8080/"


def test_serves() -> None:
    a = advert()
    assert a.serves(None)
    assert a.serves(8)
    assert not a.serves(11)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "relay name must be"),
        ({"name": "x" * 64}, "relay name must be"),
        ({"name": "bad\nname"}, "control characters"),
        ({"addresses": ()}, "no address"),
        ({"addresses": ("relay.local",)}, "not an IP address"),
        ({"quic_port": 0}, "quic_port"),
        ({"http_port": 65_536}, "http_port"),
        ({"race_ids": (0,)}, "race ids"),
        ({"cert_sha256": "abc"}, "cert_sha256"),
        ({"version": 0}, "version"),
    ],
)
def test_bad_fields_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        advert(**changes)


def test_more_races_than_fit_are_refused() -> None:
    # Scattered ids cannot be written as ranges: 20-digit ids, about 12 fit in 249 bytes.
    scattered = tuple(10**18 + 2 * i for i in range(20))
    with pytest.raises(LocalProtocolError, match="over 249"):
        advert(race_ids=scattered)
    with pytest.raises(LocalProtocolError, match=f"at most {MAX_RACES}"):
        encode_race_ids(range(1, MAX_RACES + 2))
    # A long run is one range, however many ids it holds (up to MAX_RACES).
    assert encode_race_ids(range(1, MAX_RACES + 1)) == f"1-{MAX_RACES}"


@pytest.mark.parametrize(
    ("txt", "message"),
    [
        ({b"v": b"1", b"races": b"1"}, "'http' is missing"),
        ({b"v": b"1", b"http": None, b"races": b"1"}, "'http' is missing"),
        ({b"v": b"1", b"http": b"80"}, "'races' is missing"),
        ({b"v": b"one", b"http": b"80", b"races": b""}, "'v' must be a number"),
        ({b"v": b"1", b"http": b"080", b"races": b""}, "'http' must be a number"),
        ({b"v": b"1", b"http": b"99999", b"races": b""}, "http_port must be"),
        ({b"v": b"1", b"http": b" 80", b"races": b""}, "'http' must be a number"),
        ({b"v": b"1", b"http": b"80", b"races": b"1,,2"}, "is not a race id"),
        ({b"v": b"1", b"http": b"80", b"races": b"+1"}, "is not a race id"),
        ({b"v": b"1", b"http": b"80", b"races": b"1-2-3"}, "is not a race id"),
        ({b"v": b"1", b"http": b"80", b"races": b"9-3"}, "not an increasing range"),
        ({b"v": b"1", b"http": b"80", b"races": b"9999999999999999999"}, "increasing range"),
        ({b"v": b"1", b"http": b"80", b"races": b"1", b"cert": b"zz"}, "cert_sha256"),
        ({b"v": b"1", b"http": b"80", b"races": "é".encode()}, "not ASCII"),
    ],
)
def test_malformed_txt_is_a_decode_error(txt: dict[bytes, bytes | None], message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        RelayAdvert.from_properties("relay", ["127.0.0.1"], 4433, txt)
    assert "'relay'" in str(info.value)


def test_oversized_txt_is_refused() -> None:
    txt = {b"v": b"1", b"http": b"80", b"races": b"1", b"junk": b"x" * MAX_TXT_STRING}
    with pytest.raises(LimitExceeded, match="over 255"):
        RelayAdvert.from_properties("relay", ["127.0.0.1"], 4433, txt)
    huge_range = {b"v": b"1", b"http": b"80", b"races": b"1-1000000000000"}
    with pytest.raises(LimitExceeded, match="more than"):
        RelayAdvert.from_properties("relay", ["127.0.0.1"], 4433, huge_range)


def test_missing_port_or_address_is_a_decode_error() -> None:
    txt = as_txt(advert().to_properties())
    with pytest.raises(DecodeError, match="no port"):
        RelayAdvert.from_properties("relay", ["127.0.0.1"], None, txt)
    with pytest.raises(DecodeError, match="no address"):
        RelayAdvert.from_properties("relay", [], 4433, txt)


def test_unknown_keys_are_ignored_and_keys_are_case_insensitive() -> None:
    txt = {b"V": b"1", b"HTTP": b"80", b"Races": b"2", b"future": b"yes", b"flag": None}
    a = RelayAdvert.from_properties("relay", ["127.0.0.1"], 4433, txt)
    assert (a.version, a.http_port, a.race_ids) == (1, 80, (2,))


def test_race_id_codec() -> None:
    assert decode_race_ids("") == ()
    assert decode_race_ids("5,1-3,2") == (1, 2, 3, 5)
    assert encode_race_ids([1, 2, 4, 5, 6, 9]) == "1,2,4-6,9"


def test_check_interfaces() -> None:
    assert check_interfaces(("127.0.0.1",)) == ["127.0.0.1"]
    with pytest.raises(LocalProtocolError, match="non-empty list"):
        check_interfaces([])
    with pytest.raises(LocalProtocolError, match="non-empty list"):
        check_interfaces("127.0.0.1")
    with pytest.raises(LocalProtocolError, match="not an IP address"):
        check_interfaces(["lo"])


names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: len(s.encode()) <= 63
)
addresses = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str))
ports = st.integers(1, 65_535)
race_ids = st.lists(st.integers(1, 2**63 - 1) | st.integers(1, 300), max_size=8)


@given(
    name=names,
    addrs=st.lists(addresses, min_size=1, max_size=4),
    quic_port=ports,
    http_port=ports,
    races=race_ids,
    cert=st.one_of(st.just(""), st.binary(min_size=32, max_size=32).map(bytes.hex)),
    version=st.integers(1, 65_535),
)
def test_round_trip_property(
    name: str,
    addrs: list[str],
    quic_port: int,
    http_port: int,
    races: list[int],
    cert: str,
    version: int,
) -> None:
    a = RelayAdvert(name, tuple(addrs), quic_port, http_port, tuple(races), cert, version)
    props = a.to_properties()
    assert all(len(k) + 1 + len(v) <= MAX_TXT_STRING for k, v in props.items())
    assert reparse(a) == a


@given(
    txt=st.dictionaries(
        st.sampled_from([b"v", b"http", b"races", b"cert", b"x"]),
        st.one_of(st.none(), st.binary(max_size=300)),
    ),
    port=st.one_of(st.none(), st.integers(-5, 70_000)),
)
def test_arbitrary_txt_parses_or_is_a_decode_error(
    txt: dict[bytes, bytes | None], port: int | None
) -> None:
    try:
        a = RelayAdvert.from_properties("relay", ["127.0.0.1"], port, txt)
    except DecodeError:
        return
    assert reparse(a) == a
