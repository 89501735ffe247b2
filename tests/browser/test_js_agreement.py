"""The JavaScript verifier in Chromium agrees with the Python SDK on a few thousand codes.

Issue 23's acceptance: an offline verify in the browser gives, code for code, the Python SDK's
answer. ``codemix`` makes the codes (every suite; valid, expired, early, altered, truncated,
revoked, untrusted, wrong key, wrong algorithm, stale lists) and the signed lists; the Python SDK
and ``sdk/js/src`` loaded in a blank page each verify all of them at the same clocks, and every
field both expose must match: the offline verdict (valid, reason, colour, kind, city,
checked_at, as_of, degraded), and section 8's ``verify_at`` (reason, and the claims: subject,
exp, iat, code id, kind, city, colour, version).

The page imports the package from a made-up https origin that the test serves from the
repository itself, so nothing here depends on a service serving the package.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from playwright.sync_api import BrowserContext, Page, Route

from codeengine.code.errors import VerificationError
from codeengine.code.suites import b64url_encode
from codeengine.code.token import Claims, verify_at
from tests.browser.codemix import (
    EXPECTED,
    LISTS_AT,
    SKEW_S,
    CodeMix,
    Intent,
    MixedCode,
    make_mix,
)
from verifier.offline import CachedList, OfflineVerifier, load_anchors

pytestmark = pytest.mark.browser

CODES: Final = 3000
MIN_PER_INTENT: Final = 10
ORIGIN: Final = "https://agreement.invalid"
PACKAGE: Final = Path(__file__).resolve().parents[2] / "sdk" / "js" / "src"
EVERY_REASON: Final = frozenset().union(*EXPECTED.values())

Answer = dict[str, Any]
"""One verifier's answer to one code: ``{"verdict": {...}, "strict": {"reason", "claims"}}``."""

# One evaluation over the whole batch: the lists are checked under the anchor at LISTS_AT, then
# each code is verified at its own clock, offline (the terminal's verdict) and by verifyAt.
_VERIFY_ALL: Final = """
async ({origin, anchors, trust, revocations, listsAt, skewS, codes}) => {
  const m = await import(`${origin}/src/index.js`);
  let now = listsAt;
  const sdk = await m.OfflineVerifier.fromSigned(
    m.fromHex(trust), m.fromHex(revocations), await m.TrustList.from(anchors),
    {skewS, clock: () => now},
  );
  const answers = [];
  for (const [text, at] of codes) {
    now = at;
    const verdict = {...(await sdk.verify(text))};
    let strict;
    try {
      strict = {reason: 'VALID', claims: {...(await m.verifyAt(text, sdk.trust, at, {skewS}))}};
    } catch (error) {
      if (!(error instanceof m.VerificationError)) throw error;
      strict = {reason: error.reason, claims: null};
    }
    answers.push({verdict, strict});
  }
  return answers;
}
"""


class _Clock:
    """The Python SDK's clock, set to each code's clock in turn."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> float:
        return float(self.now)


def _claims_json(claims: Claims) -> dict[str, object]:
    """The claims as the JavaScript verifier gives them."""
    return {
        "exp": claims.exp,
        "iat": claims.iat,
        "cti": claims.cti.hex(),
        "subject": b64url_encode(claims.subject),
        "kind": claims.kind.label,
        "city": claims.city,
        "colour": claims.colour.label,
        "version": claims.version,
    }


def _python_answers(mix: CodeMix) -> list[Answer]:
    anchors = load_anchors([mix.anchors_jwks])
    cached = CachedList.from_signed(mix.trust_document, mix.revocations_document, anchors, LISTS_AT)
    clock = _Clock(LISTS_AT)
    sdk = OfflineVerifier(cached, skew_s=SKEW_S, clock=clock, anchors=anchors)
    answers = []
    for code in mix.codes:
        clock.now = code.now
        verdict = sdk.verify(code.text).to_json()
        try:
            claims = verify_at(code.text, cached.trust, code.now, SKEW_S)
            strict: dict[str, object] = {"reason": "VALID", "claims": _claims_json(claims)}
        except VerificationError as exc:
            strict = {"reason": exc.reason.value, "claims": None}
        answers.append({"verdict": verdict, "strict": strict})
    return answers


def _serve_package(route: Route) -> None:
    """A blank page at the origin's root, and the package's modules under /src/."""
    path = route.request.url.removeprefix(ORIGIN).split("?")[0]
    if path == "/":
        route.fulfill(body="<!doctype html><title>agreement</title>", content_type="text/html")
        return
    name = path.removeprefix("/src/")
    module = PACKAGE / name
    if path.startswith("/src/") and "/" not in name and module.suffix == ".js" and module.is_file():
        route.fulfill(body=module.read_text(encoding="utf-8"), content_type="text/javascript")
        return
    route.fulfill(status=404, body="not found")


@pytest.fixture
def blank_page(context: BrowserContext, page: Page) -> Iterator[Page]:
    """A blank page on a secure origin (WebCrypto needs one) that serves ``sdk/js/src``."""
    context.route(f"{ORIGIN}/**", _serve_package)
    page.goto(f"{ORIGIN}/")
    yield page


def _browser_answers(page: Page, mix: CodeMix) -> list[Answer]:
    answers: list[Answer] = page.evaluate(
        _VERIFY_ALL,
        {
            "origin": ORIGIN,
            "anchors": mix.anchors_jwks,
            "trust": mix.trust_document.hex(),
            "revocations": mix.revocations_document.hex(),
            "listsAt": LISTS_AT,
            "skewS": SKEW_S,
            "codes": [[code.text, code.now] for code in mix.codes],
        },
    )
    return answers


def _disagreements(codes: tuple[MixedCode, ...], python: list[Answer], js: list[Answer]) -> str:
    lines = [
        f"#{code.index} {code.suite} {code.intent} {code.text!r}\n"
        f"  python: {ours}\n  js:     {theirs}"
        for code, ours, theirs in zip(codes, python, js, strict=True)
        if ours != theirs
    ]
    shown = "\n".join(lines[:20])
    return f"{len(lines)} of {len(codes)} codes disagree:\n{shown}" if lines else ""


def test_the_browser_verifier_agrees_with_the_python_sdk_on_every_code(
    blank_page: Page, script_errors: list[str]
) -> None:
    mix = make_mix(CODES)
    python = _python_answers(mix)
    # The mix is what it means to be: each intent gave one of its reasons in Python.
    unexpected = [
        f"#{code.index} {code.suite} {code.intent}: {answer['verdict']['reason']}"
        for code, answer in zip(mix.codes, python, strict=True)
        if answer["verdict"]["reason"] not in EXPECTED[code.intent]
    ]
    assert not unexpected, f"the generator made other codes than it meant: {unexpected[:20]}"

    js = _browser_answers(blank_page, mix)
    assert len(js) == len(mix.codes)
    disagreements = _disagreements(mix.codes, python, js)
    assert not disagreements, disagreements
    assert not script_errors

    # Not vacuous: every suite met every intent it can, and every reason was given.
    by_intent = Counter((code.suite, code.intent) for code in mix.codes)
    thin = {
        f"{suite} {intent}": by_intent[suite, intent]
        for suite in ("EdDSA", "ES256", "SM2SM3")
        for intent in Intent
        if (intent is not Intent.HIGH_S or suite == "ES256")
        and by_intent[suite, intent] < MIN_PER_INTENT
    }
    assert not thin, f"too few codes of: {thin}"
    reasons = Counter(answer["verdict"]["reason"] for answer in python)
    assert set(reasons) == EVERY_REASON, reasons
    # The two orders of checks differ where they should: revoked and stale codes still pass
    # section 8, and an expired code with an altered signature fails it on the signature.
    strict_reasons = Counter(answer["strict"]["reason"] for answer in python)
    assert strict_reasons["VALID"] > reasons["VALID"], strict_reasons
    assert strict_reasons["BAD_SIGNATURE"] > reasons["BAD_SIGNATURE"], strict_reasons
    colours = Counter(
        answer["verdict"]["colour"] for answer in python if answer["verdict"]["valid"]
    )
    assert set(colours) == {"grey", "green", "yellow", "red"}, colours
