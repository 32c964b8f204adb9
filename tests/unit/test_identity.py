from __future__ import annotations

import hashlib
import hmac

from intent_stream.identity import IdentityEdge, IdentityGraph, Pseudonymiser, email_domain


def test_explicit_group_beats_weaker_evidence_and_weaker_never_overrides():
    g = IdentityGraph()
    g.observe({"type": "identify", "userId": "u1", "traits": {"email": "a@acme.com"}}, ts=1)
    assert g.resolve(user_id="u1", anonymous_id=None) == "acme.com"
    g.observe({"type": "group", "userId": "u1", "groupId": "acct-42"}, ts=2)
    assert g.resolve(user_id="u1", anonymous_id=None) == "acct-42"
    # A later email-domain hint does not undo the explicit group call.
    hint = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.io"}}
    assert g.observe(hint, ts=3) == []
    assert g.resolve(user_id="u1", anonymous_id=None) == "acct-42"


def test_company_id_and_context_group_id_are_account_evidence():
    g = IdentityGraph()
    g.observe({"type": "identify", "userId": "u1", "traits": {"company": {"id": "c-9"}}}, ts=1)
    assert g.resolve(user_id="u1", anonymous_id=None) == "c-9"
    g.observe({"type": "page", "anonymousId": "a1", "context": {"groupId": "g-1"}}, ts=1)
    assert g.resolve(user_id=None, anonymous_id="a1") == "g-1"


def test_alias_links_a_cookie_to_a_person_and_free_mail_never_names_an_account():
    g = IdentityGraph(freemail=frozenset({"corp-mail.example"}))
    assert (
        g.observe(
            {"type": "identify", "userId": "u1", "traits": {"email": "x@corp-mail.example"}}, ts=1
        )
        == []
    )
    g.observe({"type": "alias", "previousId": "c1", "userId": "u1"}, ts=2)
    g.observe({"type": "group", "userId": "u1", "groupId": "acme"}, ts=3)
    assert g.resolve(user_id=None, anonymous_id="c1") == "acme"
    assert email_domain("x@gmail.com") is None


def test_edges_round_trip_through_bytes_and_tombstones_undo_them():
    g = IdentityGraph()
    edges = g.observe(
        {"type": "identify", "anonymousId": "c1", "userId": "u1", "context": {"groupId": "a"}},
        ts=5,
    )
    other = IdentityGraph()
    for edge in edges:
        assert other.apply(IdentityEdge.from_bytes(edge.key.encode(), edge.to_bytes()))
    assert other.resolve(user_id=None, anonymous_id="c1") == "a"
    tombstones = other.forget("user:u1")
    assert {t.key for t in tombstones} == {"person|anon:c1", "account|user:u1"}
    assert other.resolve(user_id=None, anonymous_id="c1") is None
    assert other.apply(IdentityEdge.from_bytes(b"account|user:u1", None)) is False


def test_pseudonymiser_is_keyed_and_stable():
    a, b = Pseudonymiser(b"k1"), Pseudonymiser(b"k2")
    # HMAC-SHA256 of the id under the key, as documented (the same in every process).
    assert a.person("u1") == hmac.new(b"k1", b"u1", hashlib.sha256).hexdigest()[:32]
    assert a.person("u1") != b.person("u1")
    assert "ann" not in a.email("ann@acme.com")


def test_repeated_evidence_returns_no_edges_and_changes_nothing():
    g = IdentityGraph()
    event = {"type": "identify", "anonymousId": "c1", "userId": "u1", "context": {"groupId": "a"}}
    assert [e.kind for e in g.observe(event, ts=1)] == ["person", "account"]
    known = list(g.edges())
    assert g.observe(event, ts=2) == []
    assert list(g.edges()) == known
    # The same account named more explicitly is a change (the edge's via moves up).
    group = g.observe({"type": "group", "userId": "u1", "groupId": "a"}, ts=3)
    assert [(e.node, e.target, e.via) for e in group] == [("user:u1", "a", "group")]
