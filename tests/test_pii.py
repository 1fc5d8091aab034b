"""Labeled tests for PII masking: every detector's positives, lookalikes that must survive
byte-for-byte, multilingual and emoji context, modes, config, and the processor on a Batch."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from inferline.core.records import Batch
from inferline.processors import pii as pii_module
from inferline.processors.pii import PiiMasker
from inferline.processors.pii_config import PiiConfig
from inferline.processors.pii_detectors import iban_ok, luhn_ok

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def masker() -> PiiMasker:
    return PiiMasker()


@pytest.fixture(scope="module")
def fallback_masker() -> PiiMasker:
    """The same detectors without Hyperscan: the `re` fallback must give identical results."""
    saved = pii_module._hs
    pii_module._hs = None
    try:
        return PiiMasker()
    finally:
        pii_module._hs = saved


@pytest.fixture(params=["hyperscan", "fallback"])
def any_masker(request: pytest.FixtureRequest, masker: PiiMasker, fallback_masker: PiiMasker) -> PiiMasker:
    return masker if request.param == "hyperscan" else fallback_masker


def test_hyperscan_engine_is_in_use(masker: PiiMasker) -> None:
    # Two anchor databases (numeric rules apart) and the names gazetteer.
    assert len(masker._engine.dbs) == 2, "hyperscan is installed in the venv; the fast path must be used"
    assert masker._engine.literal_db is not None


def test_the_fallback_masker_runs_without_hyperscan(fallback_masker: PiiMasker) -> None:
    """The module is compiled (mypyc): its `_hs` must still be read at run time, or every
    "fallback" case would test Hyperscan a second time."""
    engine = fallback_masker._engine
    assert not engine.dbs and engine.literal_db is None
    assert len(engine.scan_rules) == len(engine.rules)


# --- positives: (text, the exact value that must be replaced, type) ------------------------------

_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

POSITIVES = [
    # Split by characters real text has between groups (no-break, narrow no-break: French and
    # German formatting) or inside an address (soft hyphen, zero-width space): stored as sent.
    # A given name before a product word is a person unless the name is also a product's.
    ("Thanks Anna AI team", "Anna", "PERSON"),
    ("Best regards,\nAnna AI", "Anna", "PERSON"),
    ("Contact Maria Plus, our new hire", "Maria", "PERSON"),
    ("Carte 4111\u00a01111\u00a01111\u00a01111 merci", "4111\u00a01111\u00a01111\u00a01111", "CREDIT_CARD"),
    (
        "IBAN DE89\u202f3704\u202f0044\u202f0532\u202f0130\u202f00.",
        "DE89\u202f3704\u202f0044\u202f0532\u202f0130\u202f00",
        "IBAN",
    ),
    (
        "Appelez le +33\u202f6\u202f12\u202f34\u202f56\u202f78 demain",
        "+33\u202f6\u202f12\u202f34\u202f56\u202f78",
        "PHONE",
    ),
    ("mail jane\u00ad.doe@exam\u200bple.org today", "jane\u00ad.doe@exam\u200bple.org", "EMAIL"),
    # ... and where "-" makes no address (next to "@" or a dot, in the top-level domain, right
    # after it): what pages write against autolinking, pasted. Were stored in the clear until
    # 2026-12-06.
    ("write to jane@example\u200b.com today", "jane@example\u200b.com", "EMAIL"),
    ("write to jane@\u2060example.com today", "jane@\u2060example.com", "EMAIL"),
    ("write to jane@example.c\u200bom today", "jane@example.c\u200bom", "EMAIL"),
    ("write to jane@example.com\u200b today", "jane@example.com", "EMAIL"),
    ("cc: j.doe@mail\u200c.example\u00ad.co.uk", "j.doe@mail\u200c.example\u00ad.co.uk", "EMAIL"),
    # The same for the other detectors a hyphen breaks.
    (
        "IBAN DE89\u200b3704\u200b0044\u200b0532\u200b0130\u200b00 ok",
        "DE89\u200b3704\u200b0044\u200b0532\u200b0130\u200b00",
        "IBAN",
    ),
    ("from 192.168\u200b.1.20 today", "192.168\u200b.1.20", "IP_ADDRESS"),
    ("key AKIA\u2060ABCDEFGHIJKLMNOP here", "AKIA\u2060ABCDEFGHIJKLMNOP", "SECRET"),
    # EMAIL
    ("Contact jane.doe@example.com today", "jane.doe@example.com", "EMAIL"),
    ("mail: J.Smith+news@mail.co.uk.", "J.Smith+news@mail.co.uk", "EMAIL"),
    ("<bob_99@sub.example-corp.io>", "bob_99@sub.example-corp.io", "EMAIL"),
    # PHONE: international and national formats
    ("call +1 415 555 0132 now", "+1 415 555 0132", "PHONE"),
    ("office (415) 555-0132.", "(415) 555-0132", "PHONE"),
    ("London 020 7946 0958", "020 7946 0958", "PHONE"),
    ("intl +44 20 7946 0958", "+44 20 7946 0958", "PHONE"),
    ("Berlin +49 30 123456", "+49 30 123456", "PHONE"),
    ("US 415-555-0132", "415-555-0132", "PHONE"),
    ("dotted 415.555.0132", "415.555.0132", "PHONE"),
    ("Paris +33 1 23 45 67 89", "+33 1 23 45 67 89", "PHONE"),
    ("mobile 06 12 34 56 78", "06 12 34 56 78", "PHONE"),
    ("Tokyo +81 3-1234-5678", "+81 3-1234-5678", "PHONE"),
    ("e164:+14155550132", "+14155550132", "PHONE"),
    # CREDIT_CARD (Luhn-valid)
    ("card 4111 1111 1111 1111 exp", "4111 1111 1111 1111", "CREDIT_CARD"),
    ("card 4111-1111-1111-1111", "4111-1111-1111-1111", "CREDIT_CARD"),
    ("visa 4012888888881881", "4012888888881881", "CREDIT_CARD"),
    ("amex 3782 822463 10005", "3782 822463 10005", "CREDIT_CARD"),
    ("amex 378282246310005", "378282246310005", "CREDIT_CARD"),
    ("mc 5555555555554444", "5555555555554444", "CREDIT_CARD"),
    # US_SSN
    ("ssn 123-45-6789", "123-45-6789", "US_SSN"),
    ("SSN: 078 05 1120", "078 05 1120", "US_SSN"),
    # IBAN (mod-97 valid)
    ("IBAN DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00", "IBAN"),
    ("iban GB82WEST12345698765432", "GB82WEST12345698765432", "IBAN"),
    ("FR14 2004 1010 0505 0001 3M02 606 FIN", "FR14 2004 1010 0505 0001 3M02 606", "IBAN"),
    # IP_ADDRESS
    ("server 192.168.1.10 down", "192.168.1.10", "IP_ADDRESS"),
    ("from 8.8.8.8:53", "8.8.8.8", "IP_ADDRESS"),
    ("url http://10.0.0.1/x", "10.0.0.1", "IP_ADDRESS"),
    ("v6 2001:db8::8a2e:370:7334 ok", "2001:db8::8a2e:370:7334", "IP_ADDRESS"),
    ("link fe80::1ff:fe23:4567:890a", "fe80::1ff:fe23:4567:890a", "IP_ADDRESS"),
    (
        "full 2001:0db8:85a3:0000:0000:8a2e:0370:7334.",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "IP_ADDRESS",
    ),
    # SECRET
    ("key sk-abcdefghij1234567890ABCDEFGH", "sk-abcdefghij1234567890ABCDEFGH", "SECRET"),
    ("OPENAI_API_KEY=sk-proj-Xy12abCD34efGH56ijKL78mnOP90", "sk-proj-Xy12abCD34efGH56ijKL78mnOP90", "SECRET"),
    (
        "anthropic sk-ant-api03-AbC123dEf456GhI789jKl012-_x",
        "sk-ant-api03-AbC123dEf456GhI789jKl012-_x",
        "SECRET",
    ),
    ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "SECRET"),
    ("sts ASIAY34FZKBOKMUTVV7A", "ASIAY34FZKBOKMUTVV7A", "SECRET"),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "SECRET"),
    ("gh gho_16C7e42F292c6912E7710c838347Ae178B4a", "gho_16C7e42F292c6912E7710c838347Ae178B4a", "SECRET"),
    (
        "pat github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789ABCDEF",
        "github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123456789ABCDEF",
        "SECRET",
    ),
    ("slack xoxb-1234567890-0987654321-AbCdEfGhIj", "xoxb-1234567890-0987654321-AbCdEfGhIj", "SECRET"),
    ("Authorization: Bearer abc123def456ghi789", "abc123def456ghi789", "SECRET"),
    (f"jwt {_JWT} end", _JWT, "SECRET"),
    (
        "k=-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nq1w2e3==\n-----END RSA PRIVATE KEY----- tail",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nq1w2e3==\n-----END RSA PRIVATE KEY-----",
        "SECRET",
    ),
    (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "SECRET",
    ),
    # URL_CREDENTIALS: only the userinfo
    ("dsn postgres://admin:s3cr3t@db.internal:5432/app", "admin:s3cr3t", "URL_CREDENTIALS"),
    ("https://user:p%40ss@example.com/path", "user:p%40ss", "URL_CREDENTIALS"),
]


@pytest.mark.parametrize(("text", "value", "pii_type"), POSITIVES, ids=[p[0][:40] for p in POSITIVES])
def test_positive(any_masker: PiiMasker, text: str, value: str, pii_type: str) -> None:
    masked, counts = any_masker.mask_text(text)
    assert masked == text.replace(value, f"<{pii_type}>"), masked
    assert counts == {pii_type: 1}


# --- lookalikes: must come back byte-for-byte ------------------------------------------------------

NEGATIVES = [
    "Your order 1234567 shipped",
    "v1\u200b.2\u200b.3 built 2025\u200b-08\u200b-20, ticket #A-99\u200b812",
    "ticket #A-99812 and #123-456-7890",
    "request 123e4567-e89b-12d3-a456-426614174000 failed",
    "at 2025-08-20T10:05:00.250Z and 2025-08-20 10:05:00",
    "date 01.02.2025, 20.08.2025, 2025/08/20",
    "upgraded from 1.2.3 to v2.10.0-rc1 (build 10.0.19045)",
    "card-like 4111111111111112 fails Luhn",
    "card-like 4111 1111 1111 1112 fails Luhn",
    "prices $1,234.56 and 19.99 EUR and 1.299,00 €",
    "used 1200 tokens in 350 ms, 42 retries",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
    "nanos 1724150700250000000 since epoch",
    "invalid SSNs 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567, 123-45-0000",
    "not an IBAN: DE89 3704 0044 0532 0130 01 (bad checksum)",
    "octets 256.1.1.1 and 999.10.10.10",
    "clock 10:05:00 and MAC 00:1a:2b:3c:4d:5e",
    "C++ std::vector<int> and Foo::Bar",
    "kebab sk-learn and task-management-and-scheduling-system",
    "Bearer authentication is configured in the gateway",
    "short numbers 42, 7, 2025 and +1",
    "image logo@2x.png and @mention and user@localhost",
    "AKIA short AKIA1234 and ghp_short",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----",
    "https://example.com/path?x=1:2@ and ftp://host/file",
    "ratio 3:2 and scores 4-2-1",
    "phone-like 123-456-7890 starts with 1",
    # Products named like people: a given name before a model tier or a product word.
    "Amazon Nova Pro and Nova Lite answered faster than Aya Expanse; Nova Micro was cheapest.",
    "Harvey AI drafted it and Julius AI made the chart.",
    "emoji 👨\u200d👩\u200d👧 and 1\u00a0234 km at 12\u202f%",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_lookalike_untouched(any_masker: PiiMasker, text: str) -> None:
    masked, counts = any_masker.mask_text(text)
    assert masked == text
    assert counts == {}


def test_realistic_record_masks_only_pii(masker: PiiMasker) -> None:
    text = (
        "Hi, I'm trying to reconcile order 1234567 (ref #A-99812) placed on 2025-08-20T10:05:00.250Z. "
        "The invoice says $1,234.56 plus 19.99 EUR shipping; the model used 1200 tokens. We upgraded "
        "from 1.2.3 to v2.10.0-rc1, trace 4bf92f3577b34da6a3ce929d0e0e4736. Email me at jane@example.com "
        "or call +1 415 555 0132; card 4111 1111 1111 1111; refund to DE89 3704 0044 0532 0130 00."
    )
    masked, counts = masker.mask_text(text)
    assert counts == {"EMAIL": 1, "PHONE": 1, "CREDIT_CARD": 1, "IBAN": 1}
    for value in ("jane@example.com", "415 555 0132", "4111 1111", "DE89"):
        assert value not in masked
    for keep in (
        "1234567",
        "#A-99812",
        "2025-08-20T10:05:00.250Z",
        "$1,234.56",
        "19.99 EUR",
        "1200 tokens",
        "1.2.3",
        "v2.10.0-rc1",
        "4bf92f3577b34da6a3ce929d0e0e4736",
    ):
        assert keep in masked


# --- multilingual and emoji context ------------------------------------------------------------

MULTILINGUAL = [
    (
        "Bitte überweisen Sie an DE89 3704 0044 0532 0130 00 und schreiben Sie an mueller@beispiel.de.",
        {"IBAN": 1, "EMAIL": 1},
        ["DE89 3704", "beispiel.de"],
    ),
    ("Sie erreichen mich unter +49 30 123456, vielen Dank für Ihre Geduld.", {"PHONE": 1}, ["123456"]),
    (
        "Merci de m'appeler au 06 12 34 56 78 ou d'écrire à jean.dupont@exemple.fr.",
        {"PHONE": 1, "EMAIL": 1},
        ["06 12 34", "jean.dupont@exemple.fr"],
    ),
    (
        "メールはtanaka@example.co.jpです。電話は+81 3-1234-5678までお願いします。",
        {"EMAIL": 1, "PHONE": 1},
        ["tanaka@example.co.jp", "1234-5678"],
    ),
    (
        "Mi tarjeta es 4111 1111 1111 1111 y mi correo es ana@ejemplo.es, ¡gracias!",
        {"CREDIT_CARD": 1, "EMAIL": 1},
        ["4111", "ana@ejemplo.es"],
    ),
    ("Thanks 😀jane@example.com😀 and 📞 +1 415 555 0132 🙏", {"EMAIL": 1, "PHONE": 1}, ["jane@", "0132"]),
]


@pytest.mark.parametrize(("text", "counts", "gone"), MULTILINGUAL, ids=[m[0][:20] for m in MULTILINGUAL])
def test_multilingual_and_emoji(
    any_masker: PiiMasker, text: str, counts: dict[str, int], gone: list[str]
) -> None:
    masked, found = any_masker.mask_text(text)
    assert found == counts
    for value in gone:
        assert value not in masked
    # Everything around the PII survives: the non-ASCII letters and emoji are all still there.
    assert [c for c in text if not c.isascii()] == [c for c in masked if not c.isascii()]


def test_japanese_email_boundaries(masker: PiiMasker) -> None:
    masked, _ = masker.mask_text("メールはjane@example.comです")
    assert masked == "メールは<EMAIL>です"


# --- modes, hashing, config --------------------------------------------------------------------


def test_mode_drop() -> None:
    m = PiiMasker(PiiConfig(mode="drop"))
    assert m.mask_text("mail jane@example.com now") == ("mail  now", {"EMAIL": 1})


def test_mode_hash_is_stable_and_keyed() -> None:
    a = PiiMasker(PiiConfig(mode="hash", hash_key="k1"))
    b = PiiMasker(PiiConfig(mode="hash", hash_key="k1"))
    c = PiiMasker(PiiConfig(mode="hash", hash_key="k2"))
    text = "mail jane@example.com and JANE@example.com, call +1 415 555 0132"
    ma, counts = a.mask_text(text)
    assert counts == {"EMAIL": 2, "PHONE": 1}
    tokens = [t.strip(",") for t in ma.split() if t.startswith("<")]
    email1, email2 = tokens[:2]
    assert email1 == email2  # same value (case-normalised) -> same token
    assert email1.startswith("<EMAIL:") and len(email1) == len("<EMAIL:") + 8 + 1
    assert b.mask_text(text)[0] == ma  # stable across instances (and restarts)
    assert c.mask_text(text)[0] != ma  # different key -> different token
    # Different formatting of one phone number joins too.
    assert a.mask_text("+1 415 555 0132")[0] == a.mask_text("+1-415-555-0132")[0]
    assert a.mask_text("a@example.com")[0] != a.mask_text("b@example.com")[0]
    # ... and so do values written with no-break spaces or invisible characters, as detected.
    card = a.mask_text("4111 1111 1111 1111")[0]
    assert a.mask_text("4111\u00a01111\u202f1111\u20091111")[0] == card
    assert (
        a.mask_text("DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000")[0]
        == a.mask_text("DE89 3704 0044 0532 0130 00")[0]
    )
    assert a.mask_text("jane\u00ad@exam\u200bple.com")[0] == a.mask_text("jane@example.com")[0]
    assert a.mask_text("jane@example\u200b.c\u200bom")[0] == a.mask_text("jane@example.com")[0]


def test_hash_mode_requires_key() -> None:
    with pytest.raises(ValidationError):
        PiiConfig(mode="hash")


def test_custom_pattern() -> None:
    m = PiiMasker(PiiConfig(custom_patterns=[{"name": "employee_id", "regex": r"\bEMP-\d{6}\b"}]))
    assert m.mask_text("ask EMP-123456 or EMP-12") == ("ask <EMPLOYEE_ID> or EMP-12", {"EMPLOYEE_ID": 1})


def test_custom_pattern_with_lookaround_falls_back_to_re() -> None:
    m = PiiMasker(PiiConfig(custom_patterns=[{"name": "ticket", "regex": r"(?<=ticket )\d{5}"}]))
    assert m.mask_text("see ticket 12345 now") == ("see ticket <TICKET> now", {"TICKET": 1})


def test_invalid_custom_regex_rejected() -> None:
    with pytest.raises(ValidationError):
        PiiConfig(custom_patterns=[{"name": "bad", "regex": "(unclosed"}])


def test_allow_list() -> None:
    m = PiiMasker(PiiConfig(allow_list=["support@example.com"]))
    masked, counts = m.mask_text("write support@example.com or jane@example.com")
    assert masked == "write support@example.com or <EMAIL>"
    assert counts == {"EMAIL": 1}


def test_disabled_detector_dict_and_list() -> None:
    text = "mail jane@example.com call +1 415 555 0132"
    no_email = PiiMasker(PiiConfig(detectors={"EMAIL": False}))
    assert no_email.mask_text(text) == ("mail jane@example.com call <PHONE>", {"PHONE": 1})
    only_email = PiiMasker(PiiConfig(detectors=["email"]))
    assert only_email.mask_text(text) == ("mail <EMAIL> call +1 415 555 0132", {"EMAIL": 1})
    with pytest.raises(ValidationError):
        PiiConfig(detectors={"PASSPORT": True})


def test_validators() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")


def test_json_string_is_masked_per_leaf(masker: PiiMasker) -> None:
    # A newline escape right before the address must not be eaten ("\njane" is not the local part).
    value = orjson.dumps([{"role": "user", "content": "hi\njane@example.com\n+1 415 555 0132"}]).decode()
    counts: dict[str, int] = {}
    masked = masker._mask_str(value, counts, pii_module.MESSAGE_SKIP_KEYS)
    assert orjson.loads(masked) == [{"role": "user", "content": "hi\n<EMAIL>\n<PHONE>"}]
    assert counts == {"EMAIL": 1, "PHONE": 1}
    clean = orjson.dumps({"role": "user", "content": "no pii here\n"}).decode()
    assert masker._mask_str(clean, {}, pii_module.MESSAGE_SKIP_KEYS) is clean


# --- the processor on a batch ------------------------------------------------------------------

EMAIL, PHONE, CARD, KEY = (
    "jane@example.com",
    "+1 415 555 0132",
    "4111 1111 1111 1111",
    "sk-proj-Xy12abCD34efGH56ijKL78",
)


def _batch() -> Batch:
    inference = {
        "user_id": "jane@example.com",  # an identifier column: not masked
        "session_id": "sess-415-555-0132",
        "prompt_messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"I'm {EMAIL}, call {PHONE}"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "name": "lookup", "arguments": orjson.dumps({"card": CARD}).decode()}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"found {EMAIL}"},
        ],
        "response_messages": [
            {"role": "assistant", "content": f"Your key {KEY} is exposed", "reasoning": f"user wrote {PHONE}"}
        ],
    }
    span = {
        "SpanAttributes": {
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.prompt.0.content": f"mail {EMAIL}",
            "gen_ai.input.messages": orjson.dumps([{"role": "user", "content": f"call {PHONE}"}]).decode(),
            "input.value": f"card {CARD}",
            "http.client_ip": "10.0.0.1",  # every string value is scanned by default
            "user.email": EMAIL,
            "http.route": "/users/jane@example.com",  # never masked: a route is not content
        },
        "Events.Attributes": [
            {"gen_ai.completion": f"key {KEY}", "event.name": "done"},
            {"exception.message": f"failed for {EMAIL}"},
        ],
        "ResourceAttributes": {"service.name": "support-bot", "host.owner": "Anna Schmidt"},
        "StatusMessage": f"could not reach {EMAIL}",
    }
    log = {
        "Body": orjson.dumps({"content": f"reach me at {EMAIL}"}).decode(),
        "LogAttributes": {"traceloop.entity.output": f"call {PHONE}", "service": "api"},
    }
    return Batch(inferences=[inference], spans=[span], logs=[log])


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def test_processor_masks_every_field(masker: PiiMasker) -> None:
    batch = _batch()
    masker.process(batch)
    inf, span, log = batch.inferences[0], batch.spans[0], batch.logs[0]

    assert inf["pii_found"] == {"EMAIL": 2, "PHONE": 2, "CREDIT_CARD": 1, "SECRET": 1}
    for field in ("prompt_messages", "response_messages"):
        for s in _strings(inf[field]):
            for value in (EMAIL, PHONE, CARD, KEY):
                assert value not in s
    assert inf["user_id"] == "jane@example.com" and inf["session_id"] == "sess-415-555-0132"
    assert inf["prompt_messages"][1] == {"role": "user", "content": "I'm <EMAIL>, call <PHONE>"}
    call = inf["prompt_messages"][2]["tool_calls"][0]
    assert call["id"] == "call_1" and call["name"] == "lookup"
    assert orjson.loads(call["arguments"]) == {"card": "<CREDIT_CARD>"}
    assert inf["response_messages"][0]["reasoning"] == "user wrote <PHONE>"

    attrs = span["SpanAttributes"]
    assert span["PiiFound"] == {
        "EMAIL": 4,
        "PHONE": 1,
        "CREDIT_CARD": 1,
        "SECRET": 1,
        "IP_ADDRESS": 1,
        "PERSON": 1,
    }
    assert attrs["gen_ai.prompt.0.content"] == "mail <EMAIL>"
    assert orjson.loads(attrs["gen_ai.input.messages"]) == [{"role": "user", "content": "call <PHONE>"}]
    assert attrs["input.value"] == "card <CREDIT_CARD>"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    assert attrs["http.client_ip"] == "<IP_ADDRESS>" and attrs["user.email"] == "<EMAIL>"
    assert attrs["http.route"] == "/users/jane@example.com"
    assert span["Events.Attributes"][0] == {"gen_ai.completion": "key <SECRET>", "event.name": "done"}
    assert span["Events.Attributes"][1] == {"exception.message": "failed for <EMAIL>"}
    assert span["ResourceAttributes"] == {"service.name": "support-bot", "host.owner": "<PERSON>"}
    assert span["StatusMessage"] == "could not reach <EMAIL>"

    assert log["PiiFound"] == {"EMAIL": 1, "PHONE": 1}
    assert orjson.loads(log["Body"]) == {"content": "reach me at <EMAIL>"}
    assert log["LogAttributes"] == {"traceloop.entity.output": "call <PHONE>", "service": "api"}


def test_processor_only_configured_attributes_when_mask_all_is_off() -> None:
    m = PiiMasker(PiiConfig(mask_all_attributes=False, attributes=["user.email", "exception.*"]))
    batch = _batch()
    m.process(batch)
    span = batch.spans[0]
    assert span["SpanAttributes"]["user.email"] == "<EMAIL>"
    assert span["SpanAttributes"]["http.client_ip"] == "10.0.0.1"
    assert span["Events.Attributes"][1] == {"exception.message": "failed for <EMAIL>"}
    assert span["ResourceAttributes"]["host.owner"] == "Anna Schmidt"
    assert span["PiiFound"]["EMAIL"] == 3


def test_never_mask_keys_and_forced_attributes() -> None:
    m = PiiMasker(PiiConfig(never_mask=["user.*", "exception.message"], attributes=["user.email"]))
    batch = _batch()
    m.process(batch)
    span = batch.spans[0]
    assert span["SpanAttributes"]["user.email"] == "<EMAIL>"  # `attributes` win over never_mask
    assert span["Events.Attributes"][1] == {"exception.message": f"failed for {EMAIL}"}
    assert span["SpanAttributes"]["http.client_ip"] == "<IP_ADDRESS>"


def test_shared_resource_attributes_are_counted_on_every_row(masker: PiiMasker) -> None:
    resource = {"service.name": "bot", "owner.contact": "jane@example.com"}
    batch = Batch(spans=[{"SpanAttributes": {}, "ResourceAttributes": resource} for _ in range(3)])
    masker.process(batch)
    assert resource["owner.contact"] == "<EMAIL>"
    assert [row["PiiFound"] for row in batch.spans] == [{"EMAIL": 1}] * 3


def test_processor_rows_without_pii_get_empty_counts(masker: PiiMasker) -> None:
    batch = Batch(
        inferences=[{"prompt_messages": [{"role": "user", "content": "hello"}], "response_messages": []}],
        spans=[{"SpanAttributes": {"gen_ai.prompt": "what is 2+2?"}, "Events.Attributes": []}],
        logs=[{"Body": "", "LogAttributes": {}}],
    )
    before = copy.deepcopy(batch)
    masker.process(batch)
    assert batch.inferences[0]["pii_found"] == {} and batch.spans[0]["PiiFound"] == {}
    assert batch.logs[0]["PiiFound"] == {}
    assert batch.inferences[0]["prompt_messages"] == before.inferences[0]["prompt_messages"]


def test_processor_disabled() -> None:
    batch = _batch()
    PiiMasker(PiiConfig(enabled=False)).process(batch)
    assert batch.inferences[0]["prompt_messages"][1]["content"] == f"I'm {EMAIL}, call {PHONE}"
    assert "pii_found" not in batch.inferences[0]


class _FailingFirstValue(PiiMasker):
    """A masker whose first structured value fails to scan (a compiled masker's methods cannot be
    replaced on the instance: a subclass overrides them)."""

    failed = False

    def mask_value(
        self, value: Any, counts: dict[str, int], skip_keys: frozenset[str] = frozenset(), depth: int = 0
    ) -> Any:
        if not self.failed:
            self.failed = True
            raise RuntimeError("boom")
        return super().mask_value(value, counts, skip_keys, depth)


def test_bad_row_is_redacted_not_raised() -> None:
    masker = _FailingFirstValue()
    batch = _batch()
    good = {"prompt_messages": [{"role": "user", "content": f"hi {EMAIL}"}]}
    batch.inferences.append(good)
    masker.process(batch)
    bad = batch.inferences[0]
    assert bad["pii_found"] == {"ERROR": 1}
    assert all(
        s == "<REDACTED>" or s in ("system", "user", "assistant", "tool", "call_1", "lookup")
        for s in _strings(bad["prompt_messages"])
    )
    assert good["pii_found"] == {"EMAIL": 1}


class _FailingAttributes(PiiMasker):
    def _mask_attributes(self, attrs: dict[str, Any], counts: dict[str, int]) -> None:
        raise RuntimeError("boom")


def test_bad_span_redacts_only_content_attributes() -> None:
    masker = _FailingAttributes()
    batch = _batch()
    masker.process(batch)
    span = batch.spans[0]
    assert span["PiiFound"] == {"ERROR": 1}
    attrs = span["SpanAttributes"]
    assert attrs["gen_ai.prompt.0.content"] == "<REDACTED>" and attrs["input.value"] == "<REDACTED>"
    assert attrs["gen_ai.request.model"] == "gpt-4o"
    # An event's name is the application's text too ("reminder sent to jane@…"): not kept unscanned.
    assert span["Events.Attributes"][0] == {"gen_ai.completion": "<REDACTED>", "event.name": "<REDACTED>"}


def test_counts_carried_from_the_receiver_are_added(masker: PiiMasker) -> None:
    """Masked at the receiver: the content holds placeholders only, the counts came along."""
    carried = '{"EMAIL": 2, "CREDIT_CARD": 1}'
    batch = Batch(
        inferences=[
            {"span_id": "s1", "prompt_messages": [{"role": "user", "content": "mail <EMAIL>, bob@x.io"}]}
        ],
        spans=[
            {"SpanId": "s1", "SpanAttributes": {"inferline.pii_found": carried, "gen_ai.prompt": "<EMAIL>"}}
        ],
        logs=[{"Body": "<EMAIL>", "LogAttributes": {"inferline.pii_found": '{"EMAIL": 1}'}}],
    )
    masker.process(batch)
    assert batch.inferences[0]["pii_found"] == {"EMAIL": 3, "CREDIT_CARD": 1}  # 1 found here + 2 carried
    assert batch.spans[0]["PiiFound"] == {"EMAIL": 2, "CREDIT_CARD": 1}
    assert batch.logs[0]["PiiFound"] == {"EMAIL": 1}


def test_json_text_is_masked_in_place_around_escapes(masker: PiiMasker) -> None:
    """Masked leaf by leaf, written back where each value stands: the JSON text keeps its own
    formatting and escapes, only values change."""
    value = '[ {"role": "user", "content": "a\\u2013b \\"quoted\\"\\njane@example.com\\tok"} ]'
    counts: dict[str, int] = {}
    masked = masker._mask_str(value, counts, pii_module.MESSAGE_SKIP_KEYS)
    assert masked == '[ {"role": "user", "content": "a\\u2013b \\"quoted\\"\\n<EMAIL>\\tok"} ]'
    assert counts == {"EMAIL": 1}


def test_json_is_written_anew_when_a_masked_value_is_also_a_key(masker: PiiMasker) -> None:
    """Replacing the value's text in place would mask the key too: the masked value is
    serialised instead, the key and the rest of the structure as they were."""
    value = '{"jane@example.com": "jane@example.com", "role": "user"}'
    counts: dict[str, int] = {}
    masked = masker._mask_str(value, counts, pii_module.MESSAGE_SKIP_KEYS)
    assert orjson.loads(masked) == {"jane@example.com": "<EMAIL>", "role": "user"}
    assert counts == {"EMAIL": 1}


class _RecordingEngine(pii_module._Engine):
    """Keeps every text its batch scans were given."""

    def __init__(self, rules: list[Any]) -> None:
        super().__init__(rules)
        self.scanned: list[str] = []

    def find_many(self, texts: list[str], allow: frozenset[str]) -> list[list[tuple[int, int, int]]]:
        self.scanned.extend(texts)
        return super().find_many(texts, allow)


def test_a_batch_scans_a_message_once_in_its_row_and_in_its_span_json() -> None:
    """The span's JSON messages hold the texts the inference row holds: both are masked, and the
    text is scanned once for the batch."""
    text = "Bitte an Amélie Dubois schicken, Telefon +49 30 1234567."
    batch = Batch(
        inferences=[{"span_id": "s1", "prompt_messages": [{"role": "user", "content": text}]}],
        spans=[
            {
                "SpanId": "s1",
                "SpanAttributes": {
                    "gen_ai.input.messages": orjson.dumps([{"role": "user", "content": text}]).decode()
                },
            }
        ],
    )
    masker = PiiMasker()
    engine = masker._engine = _RecordingEngine(masker._rules)
    masker.process(batch)
    scanned = engine.scanned
    assert scanned.count(text) == 1 and all(text not in t or t == text for t in scanned)
    expected = "Bitte an <PERSON> schicken, Telefon <PHONE>."
    assert batch.inferences[0]["prompt_messages"] == [{"role": "user", "content": expected}]
    stored = batch.spans[0]["SpanAttributes"]["gen_ai.input.messages"]
    assert json.loads(stored) == [{"role": "user", "content": expected}]
    assert batch.inferences[0]["pii_found"] == batch.spans[0]["PiiFound"] == {"PERSON": 1, "PHONE": 1}


def test_json_nested_deeper_than_the_walk_is_masked_as_text(masker: PiiMasker) -> None:
    """OTLP allows arrays 97 levels deep: such a value is scanned and masked as JSON text (its
    escapes decoded for the scan), neither left unmasked nor its row redacted."""
    inner = orjson.dumps({"note": "call\n+1 415 555 0132 or jane@example.com", "keep": "x"}).decode()
    value = "[" * 90 + inner + "]" * 90
    batch = Batch(spans=[{"SpanId": "s1", "SpanAttributes": {"deep": value, "n": "plain text"}}])
    masker.process(batch)
    stored = batch.spans[0]["SpanAttributes"]["deep"]
    leaf: object = orjson.loads(stored)
    for _ in range(90):
        assert isinstance(leaf, list)
        leaf = leaf[0]
    assert leaf == {"note": "call\n<PHONE> or <EMAIL>", "keep": "x"}
    assert batch.spans[0]["PiiFound"] == {"PHONE": 1, "EMAIL": 1}


@pytest.mark.parametrize("batch_scan", [True, False])
def test_json_that_does_not_parse_is_read_with_its_escapes_decoded(batch_scan: bool) -> None:
    """JSON cut by an SDK's attribute length limit does not parse: it was scanned as raw text, in
    which "Am\\u00e9lie" is no name and "regards,\\nAnna" no line break, so the names were
    stored as sent (the IBAN beside them was masked). A value deeper than the walk goes had the
    same blind spot ("leak\\u0040example.org")."""
    masker = PiiMasker()
    masker._batch_scan = batch_scan
    cut = json.dumps(
        {"note": "Merci Amélie Dubois, IBAN DE89 3704 0044 0532 0130 00. Best regards,\nAnna Schmidt"}
    )
    cut = cut[:-2]  # cut inside the string, as a length limit does
    deep = "[" * 70 + json.dumps({"mail": "leak@example.org"}).replace("@", "\\u0040") + "]" * 70
    batch = Batch(spans=[{"SpanId": "s1", "SpanAttributes": {"cut": cut, "deep": deep}}])
    masker.process(batch)
    stored = batch.spans[0]["SpanAttributes"]
    assert stored["cut"] == '{"note": "Merci <PERSON>, IBAN <IBAN>. Best regards,\\n<PERSON>'
    assert "leak" not in stored["deep"] and "<EMAIL>" in stored["deep"]
    orjson.loads(stored["deep"])  # still JSON
    assert batch.spans[0]["PiiFound"] == {"PERSON": 2, "IBAN": 1, "EMAIL": 1}


def test_json_with_escaped_accented_letters_is_masked_per_leaf(masker: PiiMasker) -> None:
    """json.dumps writes "Amélie" as "Am\\u00e9lie": the name is found in the decoded value."""
    value = json.dumps([{"role": "user", "content": "Merci de transmettre à Amélie Dubois."}])
    counts: dict[str, int] = {}
    masked = orjson.loads(masker._mask_str(value, counts, pii_module.MESSAGE_SKIP_KEYS))
    assert masked == [{"role": "user", "content": "Merci de transmettre à <PERSON>."}]
    assert counts == {"PERSON": 1}


def test_json_falls_back_to_leaves_when_a_match_is_not_inside_a_string(masker: PiiMasker) -> None:
    # A bare number that looks like a phone number: masking the text would break the JSON.
    value = '{"n": 4155550132, "content": "call +1 415 555 0132"}'
    counts: dict[str, int] = {}
    masked = orjson.loads(masker._mask_str(value, counts, pii_module.MESSAGE_SKIP_KEYS))
    assert masked == {"n": 4155550132, "content": "call <PHONE>"}


def test_every_leaf_of_json_is_scanned_whatever_its_key(masker: PiiMasker) -> None:
    """A key's name says nothing of its value: a tool call's arguments, a log body or any JSON
    attribute may put a person under "name" and an email under "id" (both leaked before)."""
    value = orjson.dumps(
        {
            "name": "Dr. Hans Müller",
            "id": "jane.doe@example.com",
            "type": "+49 30 1234567",
            "role": "4111 1111 1111 1111",
            "content": "jane.doe@example.com",
        }
    ).decode()
    counts: dict[str, int] = {}
    masked = orjson.loads(masker._mask_str(value, counts, pii_module.MESSAGE_SKIP_KEYS))
    assert "Müller" not in str(masked) and "jane.doe" not in str(masked)
    assert "1234567" not in str(masked) and "4111" not in str(masked)
    assert counts["EMAIL"] == 2


def test_ids_and_enums_of_messages_are_scanned_and_left_as_they_are(masker: PiiMasker) -> None:
    """Scanning the identifiers and enums of chat messages (call ids, roles, types) costs no
    precision: no detector matches them."""
    messages = [
        {"role": "assistant", "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "tool_call"},
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather"},
        {"id": "chatcmpl-8xYzAbCdEfGhIjKlMnOpQrStUv", "finish_reason": "tool_calls"},
        {"id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "type": "function_call"},
    ]
    value = orjson.dumps(messages).decode()
    counts: dict[str, int] = {}
    assert masker._mask_str(value, counts, pii_module.MESSAGE_SKIP_KEYS) == value
    assert counts == {}


PROBE = "Dr. Hans Müller, jane.doe@example.com, +49 30 1234567, card 4111 1111 1111 1111"


def _clean(value: object) -> bool:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return not any(raw in text for raw in ("Müller", "jane.doe", "1234567", "4111"))


@pytest.mark.parametrize("batch_scan", [True, False])
def test_places_that_leaked_are_masked(batch_scan: bool) -> None:
    """Each place an adversarial run through the service found unmasked (2026-12-05): a bare card
    number in an attribute, JSON attributes and log bodies with PII under "name"/"id"/"type", a
    tool call's arguments, a log's scope attributes, the inference columns copied from attributes
    (tags, request parameters, agent name, server address), a score's label and names, and
    OpenAI's `user` in `llm.invocation_parameters`."""
    masker = PiiMasker()
    masker._batch_scan = batch_scan
    arguments = json.dumps({"name": "Dr. Hans Müller", "id": "jane.doe@example.com"})
    batch = Batch(
        spans=[
            {
                "SpanId": "s1",
                "SpanName": "GET /users/jane.doe@example.com",
                "SpanAttributes": {
                    "app.card": "4111111111111111",
                    "app.payload": json.dumps({"name": "Dr. Hans Müller", "id": "jane.doe@example.com"}),
                    "llm.invocation_parameters": json.dumps({"user": "jane.doe@example.com", "top_p": 1}),
                    "otel.status_description": PROBE,
                },
            }
        ],
        logs=[
            {
                "SpanId": "s1",
                "Body": json.dumps([{"name": "Dr. Hans Müller", "type": "+49 30 1234567"}]),
                "LogAttributes": {},
                "ScopeAttributes": {"app.note": PROBE},
            }
        ],
        inferences=[
            {
                "span_id": "s1",
                "prompt_messages": [{"role": "user", "name": "Dr. Hans Müller", "content": "hi"}],
                "response_messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "call_1", "function": {"name": "f", "arguments": arguments}}],
                    }
                ],
                "tags": {"feature": PROBE, "customer": "jane.doe@example.com"},
                "request_parameters": {"stop_sequences": PROBE},
                "agent_name": PROBE,
                "server_address": "jane.doe@example.com",
            }
        ],
        scores=[{"label": PROBE, "name": PROBE, "identifier": PROBE, "explanation": "", "metadata": ""}],
    )
    masker.process(batch)
    span, log_row, inference, score = batch.spans[0], batch.logs[0], batch.inferences[0], batch.scores[0]
    assert _clean(span["SpanAttributes"]), span["SpanAttributes"]
    assert span["SpanName"] == "GET /users/<EMAIL>"
    assert _clean(log_row["Body"]) and _clean(log_row["ScopeAttributes"]), log_row
    assert _clean(inference), inference
    assert _clean(score), score
    assert span["SpanAttributes"]["app.card"] == "<CREDIT_CARD>"
    assert json.loads(span["SpanAttributes"]["llm.invocation_parameters"])["top_p"] == 1
    assert inference["tags"]["feature"] == "Dr. <PERSON>, <EMAIL>, <PHONE>, card <CREDIT_CARD>"
    assert inference["pii_found"]["EMAIL"] >= 3 and log_row["PiiFound"]["PERSON"] >= 2


@pytest.mark.parametrize("batch_scan", [True, False])
def test_places_a_second_hunt_found_unmasked_are_masked(batch_scan: bool) -> None:
    """A second adversarial run through the service (2026-12-05, evening) found PII stored as sent
    under keys the never-mask globs caught by accident (`db.operation*` took a query's bind values
    in `db.operation.parameter.<key>`; `langfuse.observation.model*` the request parameters, OpenAI's
    `user` among them), in a sender's own `inferline.pii_found`, in text behind a `data:…;base64,`
    prefix that is no base64, in a log row's schema URLs, and in a score's evaluator."""
    masker = PiiMasker()
    masker._batch_scan = batch_scan
    batch = Batch(
        spans=[
            {
                "SpanId": "s1",
                "SpanAttributes": {
                    "db.operation.parameter.email": "jane.doe@example.com",
                    "db.operation.name": "SELECT",
                    "langfuse.observation.model.parameters": json.dumps({"user": "jane.doe@example.com"}),
                    "langfuse.observation.model.name": "gpt-4o",
                    "inferline.pii_found": json.dumps({"note": PROBE}),
                    "app.inline": "data:text/plain;base64, " + PROBE,
                    "app.image": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB",
                },
            }
        ],
        logs=[
            {
                "SpanId": "s1",
                "Body": "",
                "LogAttributes": {},
                "ResourceSchemaUrl": "https://jane.doe@example.com:secret@schemas.example.com/1.0",
                "ScopeSchemaUrl": "https://schemas.example.com/" + PROBE,
            }
        ],
        scores=[{"label": "", "name": "tone", "identifier": "", "explanation": "", "evaluator": PROBE}],
    )
    masker.process(batch)
    span, log_row, score = batch.spans[0].copy(), batch.logs[0], batch.scores[0]
    attributes = span["SpanAttributes"]
    assert attributes["db.operation.parameter.email"] == "<EMAIL>"
    assert attributes["db.operation.name"] == "SELECT"
    assert json.loads(attributes["langfuse.observation.model.parameters"]) == {"user": "<EMAIL>"}
    assert attributes["langfuse.observation.model.name"] == "gpt-4o"
    assert _clean(attributes), attributes
    assert attributes["app.image"] == "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"
    assert _clean(log_row["ResourceSchemaUrl"]) and _clean(log_row["ScopeSchemaUrl"]), log_row
    assert _clean(score), score


def test_model_and_application_names_are_never_masked(masker: PiiMasker) -> None:
    """The attributes the inference row's `model` and `service_name` are read from: masked in the
    span, they were stored as sent in those columns (and named a product after a person)."""
    attributes = {
        "embedding.model_name": "Aya Tanaka",
        "llm.request.model_name": "Aya Tanaka",
        "llm.response.model_name": "Aya Tanaka",
        "gen_ai.application_name": "Aya Tanaka",
    }
    batch = Batch(spans=[{"SpanId": "s1", "SpanAttributes": dict(attributes)}])
    masker.process(batch)
    assert batch.spans[0]["SpanAttributes"] == attributes


def test_configured_id_attributes_mask_their_id_column_too() -> None:
    """docs/pii.md: a deployment whose user ids are emails adds `user.id` to `attributes`. The
    span's attribute was masked, but `llm_inferences.user_id` (and the usage rollup fed by it)
    kept the address."""
    masker = PiiMasker(PiiConfig(attributes=["user.id"]))
    row = {"span_id": "s1", "user_id": "jane.doe@example.com", "session_id": "jane.doe@example.com"}
    batch = Batch(inferences=[row])
    masker.process(batch)
    assert batch.inferences[0]["user_id"] == "<EMAIL>"
    assert batch.inferences[0]["session_id"] == "jane.doe@example.com"  # not configured: an id
    unconfigured = Batch(inferences=[{"span_id": "s1", "user_id": "jane.doe@example.com"}])
    PiiMasker().process(unconfigured)
    assert unconfigured.inferences[0]["user_id"] == "jane.doe@example.com"
    # The tenant keys a deployment configures (`processors.tenant_keys`) count too.
    from inferline.core.config import ProcessorSettings
    from inferline.processors.chain import ProcessorChain

    settings = ProcessorSettings(chain=["pii"], tenant_keys=["org.owner"], pii={"attributes": ["org.owner"]})
    (stage,) = ProcessorChain(settings).stages
    tenant = Batch(inferences=[{"span_id": "s1", "tenant_id": "jane.doe@example.com"}])
    stage.process(tenant)
    assert tenant.inferences[0]["tenant_id"] == "<EMAIL>"


def test_a_score_label_is_masked_before_it_is_cut_to_its_bound() -> None:
    """A label is cut to 256 characters; cut before the PII stage, an address across the cut was
    stored as its first half ("jane.doe@exa"), which no detector reads as an address."""
    from inferline.core.config import ProcessorSettings
    from inferline.processors.chain import ProcessorChain
    from tests.genai_examples import make_span

    label = "x " * 120 + "jane.doe@example.com and more"  # the address spans character 256
    event = {
        "name": "gen_ai.evaluation.result",
        "attributes": {"gen_ai.evaluation.name": "tone", "gen_ai.evaluation.score.label": label},
    }
    span = make_span({"name": "chat", "attributes": {"gen_ai.operation.name": "chat"}, "events": [event]})
    batch = ProcessorChain(ProcessorSettings(chain=["pii"])).run([span], [])
    (score,) = batch.scores
    assert score["label"] == ("x " * 120 + "<EMAIL> and more")[:256]
    assert score["pii_found"] == {"EMAIL": 1}


# --- pathological input: bounded work, never a failed batch --------------------------------------

PATHOLOGICAL = {
    "1 MB of one letter": "a" * 1_000_000,
    "1 MB of one capital": "A" * 1_000_000,
    "1 MB of digits": "7" * 1_000_000,
    "100k short tokens": "ab " * 100_000,
    "100k given names": "Anna " * 100_000,
    "100k titles": "Dr. Müller " * 50_000,
    "100k street fragments": "Hauptstraße 5, " * 50_000,
    "deeply nested JSON": "[" * 5_000 + '"jane@example.com"' + "]" * 5_000,
    "lone surrogates": "mail jane@example.com \ud800 from Anna Schmidt \udfff",
}


@pytest.mark.parametrize("text", list(PATHOLOGICAL.values()), ids=list(PATHOLOGICAL))
def test_pathological_text_is_masked_or_passed_through(masker: PiiMasker, text: str) -> None:
    masked, counts = masker.mask_text(text)
    assert isinstance(masked, str) and all(n > 0 for n in counts.values())
    assert "jane@example.com" not in masked and "Anna Schmidt" not in masked


def test_pathological_rows_do_not_fail_the_batch(masker: PiiMasker) -> None:
    bad_leaf = {"role": "user", "content": "[" * 3_000 + "]" * 3_000}
    surrogate_json = orjson.dumps({"content": "jane@example.com"}).decode().replace("jane", "\\ud800jane")
    deep: object = "jane@example.com"
    for _ in range(5_000):  # deeper than the interpreter's recursion limit
        deep = [deep]
    batch = Batch(
        inferences=[
            {"prompt_messages": [bad_leaf, {"role": "user", "content": "x" * 1_000_000}]},
            {"prompt_messages": [{"role": "user", "content": deep}]},
            {"prompt_messages": [{"role": "user", "content": f"hi {EMAIL}"}]},
        ],
        spans=[{"SpanAttributes": {"gen_ai.input.messages": surrogate_json, "note": "\ud800" * 1000}}],
        logs=[{"Body": "Anna " * 100_000, "LogAttributes": {}}],
    )
    masker.process(batch)
    assert batch.inferences[2]["pii_found"] == {"EMAIL": 1}
    # Too deep to walk: redacted, not let through and not raised.
    assert batch.inferences[1]["pii_found"] == {"ERROR": 1}
    assert EMAIL not in str(batch.inferences[1]["prompt_messages"])
    assert "jane@example.com" not in batch.spans[0]["SpanAttributes"]["gen_ai.input.messages"]
    assert batch.logs[0]["PiiFound"]["PERSON"] > 0


# --- the batch pre-scan (one Hyperscan scan per batch) gives what a scan per value gives ----------

_EDGES = [
    "4111 1111 1111 1111",  # a number at a value's very start (left context at the separator)
    "+1 415 555 0132",
    "203.0.113.42",
    "Best regards,\nAnna",  # a given name at a value's very end (the literal scan's end character)
    "Thanks, Anna",
    "lives at 12 rue",  # an anchor that would end in the separator's space
    "Hi de",
    "merci élodie, à bientôt",  # all lower case: no name scan
    "://user:pass",  # URL credentials cut at the value's end
    "user:pass@host.example.com",
    '{"content": "Am\\u00e9lie Dubois, jane@example.com"}',  # masked leaf by leaf
    '{"content": "Am\\u00e9lie sagt hallo"}',
    '[{"role": "user", "content": "mail\\njane@example.com"}]',  # masked in place
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
    "mail jane@example.com \ud800 from Anna Schmidt \udfff",
]


def _scan_batch(texts: list[str]) -> Batch:
    return Batch(
        inferences=[{"prompt_messages": [{"role": "user", "content": t}]} for t in texts],
        spans=[
            {"SpanAttributes": {"app.note": t, "gen_ai.request.model": "gpt-4o"}, "StatusMessage": t}
            for t in texts
        ],
        logs=[{"Body": t, "LogAttributes": {"note": t}} for t in reversed(texts)],
        scores=[{"explanation": t} for t in texts],
    )


def test_batch_scan_gives_the_same_rows_as_a_scan_per_value() -> None:
    texts = [t for t, *_ in POSITIVES] + list(NEGATIVES) + [t for t, *_ in MULTILINGUAL] + _EDGES
    texts += [json.dumps({"content": t}) for t in texts] + [
        json.dumps({"content": t}, ensure_ascii=False) for t in texts
    ]
    masker = PiiMasker()
    assert masker._batch_scan
    per_value = PiiMasker()
    per_value._batch_scan = False
    a, b = _scan_batch(texts), _scan_batch(texts)
    masker.process(a)
    per_value.process(b)
    assert a == b
    assert any(row["pii_found"] for row in a.inferences) and any(not row["pii_found"] for row in a.inferences)
    engine = masker._engine
    assert engine.find_many(texts, frozenset()) == [engine.find(t, frozenset()) for t in texts]


def test_the_batch_scan_table_lives_for_one_batch() -> None:
    # Nothing one batch's pre-scan found (clean values, detections) answers for the next batch,
    # which may be another project's: its texts are scanned, its rows are what a fresh masker gives.
    masker = PiiMasker()
    first, second = ["all quiet on this front", "mail jane@example.com"], ["call +1 415 555 0132 now"]
    a, b = _scan_batch(first), _scan_batch(second)
    masker.process(a)
    assert masker._scanned is None
    masker.process(b)
    assert masker._scanned is None
    fresh = _scan_batch(second)
    PiiMasker().process(fresh)
    assert b == fresh
    assert all(row["pii_found"] == {"PHONE": 1} for row in b.inferences)
    assert [row["pii_found"] for row in a.inferences] == [{}, {"EMAIL": 1}]


def test_batch_scan_is_off_with_custom_patterns() -> None:
    # A user's regex might match across the separator of the joined texts.
    masker = PiiMasker(PiiConfig(custom_patterns=[{"name": "emp", "regex": r"EMP-\d{6}"}]))
    assert not masker._batch_scan


class _FailingBatchScan(pii_module._Engine):
    def find_many(self, texts: list[str], allow: frozenset[str]) -> list[list[tuple[int, int, int]]]:
        raise RuntimeError("boom")


def test_a_failed_batch_scan_falls_back_to_a_scan_per_row() -> None:
    masker = PiiMasker()
    masker._engine = _FailingBatchScan(masker._rules)
    batch = _batch()
    masker.process(batch)
    assert batch.inferences[0]["pii_found"] and EMAIL not in str(batch.inferences[0]["prompt_messages"])


def test_a_sender_cannot_pass_free_text_unmasked_under_a_key_inferline_writes(masker: PiiMasker) -> None:
    """No key a sender can set passes free text unmasked: not `inferline.*` (inferline writes a
    few of those itself, whose values are scanned and stay as they are), not `otel.scope.*`."""
    attributes = {
        "inferline.note": PROBE,
        "inferline.truncated": PROBE,
        "otel.scope.note": PROBE,
        "inferline.pii_found": '{"EMAIL": 1}',
        "otel.status_code": "ERROR",
    }
    batch = Batch(spans=[{"SpanId": "s1", "SpanAttributes": dict(attributes)}])
    masker.process(batch)
    stored = batch.spans[0]["SpanAttributes"]
    assert _clean({k: stored[k] for k in ("inferline.note", "inferline.truncated", "otel.scope.note")})
    assert stored["inferline.pii_found"] == '{"EMAIL": 1}' and stored["otel.status_code"] == "ERROR"
    truncated = Batch(spans=[{"SpanId": "s2", "SpanAttributes": {"inferline.truncated": "true"}}])
    masker.process(truncated)
    assert truncated.spans[0]["SpanAttributes"]["inferline.truncated"] == "true"


def test_forged_carried_counts_put_no_text_into_the_counts(masker: PiiMasker) -> None:
    """`inferline.pii_found` is what the receiver writes when it masks; a sender can write it too.
    Only names a detector can have are counted."""
    forged = json.dumps({"jane.doe@example.com": 1, "EMAIL": 2, "PHONE": "x"})
    batch = Batch(spans=[{"SpanId": "s1", "SpanAttributes": {"inferline.pii_found": forged}}])
    masker.process(batch)
    assert batch.spans[0]["PiiFound"] == {"EMAIL": 2}


def test_a_log_event_name_sent_as_the_event_name_attribute_is_masked(masker: PiiMasker) -> None:
    """Older SDKs send a log event's name only as the attribute `event.name` (EventName is copied
    from it): both are masked, standard names ("gen_ai.user.message") stay as they are."""
    batch = Batch(
        logs=[
            {
                "Body": "",
                "LogAttributes": {"event.name": "signup of jane.doe@example.com"},
                "EventName": "signup of jane.doe@example.com",
            },
            {
                "Body": "",
                "LogAttributes": {"event.name": "gen_ai.user.message"},
                "EventName": "gen_ai.user.message",
            },
        ]
    )
    masker.process(batch)
    signup, standard = batch.logs
    assert (
        signup["LogAttributes"] == {"event.name": "signup of <EMAIL>"}
        and signup["EventName"] == "signup of <EMAIL>"
    )
    assert signup["PiiFound"] == {"EMAIL": 2}
    assert standard["LogAttributes"] == {"event.name": "gen_ai.user.message"} and standard["PiiFound"] == {}


def _record_start_end(_id: int, start: int, end: int, _flags: int, out: object) -> None:
    assert isinstance(out, list)
    out.append((start, end))


def test_the_english_address_anchor_starts_where_hyperscan_would_start_it() -> None:
    """The English address anchor is scanned without start-of-match tracking (cheaper) and its
    start found from the reported end in Python. That start must be the one Hyperscan's leftmost
    tracking gives, on numbers longer than a house number, accented and '?' words, emoji and
    addresses back to back, or a detection would be checked from the wrong place."""
    import random

    import hyperscan

    from inferline.processors import pii_detectors

    rule = pii_detectors.ADDRESS_RULES[0]
    assert rule.locate is not None
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=list(rule.anchors), ids=[0], elements=1, flags=[hyperscan.HS_FLAG_SOM_LEFTMOST])
    scratch = hyperscan.Scratch(db)
    rng = random.Random(5)
    words = ["Baker", "Main", "Élysée", "Königs", "O'Neil", "Anne-Marie", "X", "Ölberg", "Old", "?ark"]
    types = pii_detectors.pii_names.EN_STREET_TYPES
    fill = ["", "at ", "12", "1234567 ", "né ", "x", "Apt 4, ", "ab1", "ß", "🙂 ", "—"]
    reports = 0
    for _ in range(3000):
        parts = [rng.choice(fill)]
        for _ in range(rng.randint(1, 3)):
            number = str(rng.randint(0, 10 ** rng.randint(1, 7))) + rng.choice(["", "B", ","])
            street = " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
            parts.append(f"{number} {street} {rng.choice(types)}{rng.choice([' ', '.', ',', 'x', ''])}")
            parts.append(rng.choice(fill))
        text = "".join(parts)
        hits: list[tuple[int, int]] = []
        db.scan(
            text.encode("ascii", "replace"),
            match_event_handler=_record_start_end,
            context=hits,
            scratch=scratch,
        )
        for start, end in hits:
            assert rule.locate(text, end) == start, (text, start, end)
        reports += len(hits)
    assert reports > 2000  # the generated texts do hold addresses


class _OneAnchorDatabase(pii_module._Engine):
    """The same rules with every anchor in one Hyperscan database, as before the numeric rules'
    anchors got a database of their own."""

    def _compiled(self, anchored: list[tuple[int, tuple[bytes, ...], int]]) -> Any:
        held = getattr(self, "_held", None)
        if held is None:  # the first group: kept for the second
            self._held = anchored
            return None
        return super()._compiled([*held, *anchored])


def test_two_anchor_databases_find_what_one_database_found(masker: PiiMasker) -> None:
    """The anchors are scanned in two databases and their reports merged by end offset; the
    detections must be those of one database over every anchor, text by text and in a batch, on
    the labeled corpus and on its texts run together (reports of both databases interleaved)."""
    two = masker._engine
    one = _OneAnchorDatabase(two.rules)
    assert len(two.dbs) == 2 and len(one.dbs) == 1
    texts = []
    for name in ("pii_corpus.tsv", "pii_unseen.tsv"):
        lines = (Path(__file__).parent / "data" / name).read_text().splitlines()
        texts += [line.split("\t")[3].replace("\\n", "\n") for line in lines if not line.startswith("#")]
    texts += [" ".join(texts[i : i + 12]) for i in range(0, len(texts), 12)]
    found = 0
    for text in texts:
        assert two.find(text, frozenset()) == one.find(text, frozenset()), text
        found += len(one.find(text, frozenset()))
    assert two.find_many(texts, frozenset()) == one.find_many(texts, frozenset())
    assert found > 1000  # the corpus holds PII: the comparison is not of empty lists
