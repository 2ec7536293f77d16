"""The session cookie: sealed, tamper-evident, expiring, and readable across a key rotation."""

import time

from cryptography.fernet import Fernet

from tsunagu_console.adapters.sessions import SessionCookies

KEY, NEWER = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def a_session(cookies: SessionCookies, **changes):
    return cookies.new(**({"kind": "staff", "role": "counter", "subject": "dev-counter", "display_name": "相談窓口",
                           "token": "the-staff-token"} | changes))


def test_a_sealed_session_opens_to_the_same_session_and_does_not_show_its_token():
    cookies = SessionCookies(KEY, secure=True, hours=1)
    session = a_session(cookies)

    sealed = cookies.seal(session)

    assert "the-staff-token" not in sealed
    assert cookies.open(sealed) == session


def test_a_changed_cookie_opens_to_nobody():
    cookies = SessionCookies(KEY, secure=True, hours=1)
    sealed = cookies.seal(a_session(cookies))

    assert cookies.open(sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")) is None
    assert cookies.open("not a cookie") is None
    assert cookies.open("") is None


def test_a_session_past_its_end_opens_to_nobody():
    cookies = SessionCookies(KEY, secure=True, hours=1)
    expired = a_session(cookies)
    expired = type(expired)(**(vars(expired) | {"expires": int(time.time()) - 1}))

    assert cookies.open(cookies.seal(expired)) is None


def test_a_cookie_sealed_with_the_previous_key_still_opens_after_a_new_key_is_put_first():
    before = SessionCookies(KEY, secure=True, hours=1)
    sealed = before.seal(a_session(before))

    after = SessionCookies(f"{NEWER},{KEY}", secure=True, hours=1)

    assert after.open(sealed) is not None
    assert SessionCookies(NEWER, secure=True, hours=1).open(sealed) is None


def test_a_partner_session_never_outlives_the_partner_token_it_holds():
    cookies = SessionCookies(KEY, secure=True, hours=8)

    session = a_session(cookies, kind="partner", role="partner", seconds=3600)

    assert session.expires <= time.time() + 3600


def test_a_missing_or_malformed_key_is_refused_with_the_setting_named():
    for keys in ("", "not-a-fernet-key"):
        try:
            SessionCookies(keys, secure=True, hours=1)
        except ValueError as exc:
            assert "TSUNAGU_CONSOLE_SESSION_KEYS" in str(exc)
        else:
            raise AssertionError("accepted")
