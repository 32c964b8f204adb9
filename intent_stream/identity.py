"""One ID per person and per account: the identity graph behind the ingest agent.

Nodes are visitor cookies (``anon:<anonymousId>``) and known people (``user:<userId>``). Two
kinds of edge join them, each stored under its own key so that a newer edge replaces an older
one and a tombstone undoes it:

``person``
    a cookie belongs to a known person (an ``identify`` or any call carrying both ids, or an
    ``alias`` from ``previousId`` to ``userId``);
``account``
    a node belongs to an account. Evidence ranks by how explicit it is: a ``group`` call beats
    ``context.groupId`` beats ``traits.company.id`` beats the domain of a business email.
    Free-mail domains (gmail.com, qq.com, ...) never name an account. Weaker evidence never
    replaces stronger evidence; equal or stronger evidence moves the node (the older edge is
    simply replaced, so a wrong merge is undone by a newer edge or a tombstone).

:class:`IdentityGraph` is pure: it learns edges from events (:meth:`IdentityGraph.observe`),
applies edges learned elsewhere (:meth:`IdentityGraph.apply`, e.g. from another worker via the
compacted identity topic) and answers :meth:`IdentityGraph.resolve`.

>>> g = IdentityGraph()
>>> edges = g.observe({"type": "identify", "anonymousId": "c1", "userId": "u1",
...                    "traits": {"email": "Ann@Acme.com"}}, ts=1.0)
>>> [(e.kind, e.node, e.target, e.via) for e in edges]
[('person', 'anon:c1', 'user:u1', 'identify'), ('account', 'user:u1', 'acme.com', 'email_domain')]
>>> g.resolve(user_id=None, anonymous_id="c1")
'acme.com'
>>> g.observe({"type": "identify", "userId": "u2", "traits": {"email": "bob@gmail.com"}}, ts=2.0)
[]
>>> g.resolve(user_id="u2", anonymous_id=None) is None
True
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "FREEMAIL_DOMAINS",
    "VIA_RANK",
    "IdentityEdge",
    "IdentityGraph",
    "Pseudonymiser",
    "email_domain",
    "node_of",
]

#: Domains of free-mail providers: an address there says nothing about the person's employer.
FREEMAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.jp",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "yandex.com",
        "zoho.com",
        "fastmail.com",
        "tutanota.com",
        "qq.com",
        "foxmail.com",
        "163.com",
        "126.com",
        "yeah.net",
        "sina.com",
        "sohu.com",
        "aliyun.com",
        "naver.com",
        "daum.net",
        "hanmail.net",
        "rediffmail.com",
        "example.com",
    }
)

#: Longer account ids are not account evidence (the event topic rejects them).
_MAX_ACCOUNT_ID = 256
#: How explicit each kind of account evidence is; higher wins.
VIA_RANK = {"email_domain": 1, "company": 2, "context": 3, "group": 4}


def node_of(kind: str, value: str) -> str:
    """The graph node of an id: ``node_of('anon', 'c1') == 'anon:c1'``."""
    return f"{kind}:{value}"


def email_domain(email: Any, freemail: frozenset[str] = FREEMAIL_DOMAINS) -> str | None:
    """The lower-cased business domain of an email address, or None.

    >>> email_domain("Ann@Sales.ACME.com")
    'sales.acme.com'
    >>> email_domain("someone@qq.com") is None, email_domain("no-at-sign") is None
    (True, True)
    """
    if not isinstance(email, str) or email.count("@") != 1:
        return None
    domain = email.rsplit("@", 1)[1].strip().lower().rstrip(".")
    if "." not in domain or domain in freemail:
        return None
    return domain


class Pseudonymiser:
    """Replaces person ids by a keyed HMAC-SHA256 of themselves (or leaves them when unkeyed).

    >>> Pseudonymiser(b"").person("u1")
    'u1'
    >>> p = Pseudonymiser(b"k")
    >>> p.person("u1") == p.person("u1") != "u1", len(p.person("u1"))
    (True, 32)
    >>> p.email("Ann@acme.com").endswith("@acme.com")
    True
    """

    def __init__(self, key: bytes) -> None:
        self.key = key

    @property
    def enabled(self) -> bool:
        return bool(self.key)

    def person(self, value: str) -> str:
        if not self.key:
            return value
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()[:32]

    def email(self, value: str) -> str:
        """The pseudonymised address keeps its domain, which is account evidence."""
        if not self.key:
            return value
        local, _, domain = value.rpartition("@")
        return f"{self.person(value)}@{domain}" if local else self.person(value)


@dataclass(frozen=True, slots=True)
class IdentityEdge:
    """``node`` belongs to ``target`` (a person node or an account id); None undoes it."""

    kind: str  # "person" or "account"
    node: str
    target: str | None
    via: str
    ts: float

    @property
    def key(self) -> str:
        """The compacted-topic key: one live edge per kind and node."""
        return f"{self.kind}|{self.node}"

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "kind": self.kind,
                "node": self.node,
                "target": self.target,
                "via": self.via,
                "ts": self.ts,
            }
        )

    @classmethod
    def from_bytes(cls, key: bytes, value: bytes | None) -> IdentityEdge:
        """Parse a record of the identity topic; a null value is a tombstone for its key."""
        if value is None:
            kind, _, node = key.decode().partition("|")
            return cls(kind=kind, node=node, target=None, via="forget", ts=0.0)
        doc = orjson.loads(value)
        return cls(
            kind=str(doc["kind"]),
            node=str(doc["node"]),
            target=doc.get("target"),
            via=str(doc.get("via", "")),
            ts=float(doc.get("ts", 0.0)),
        )


class IdentityGraph:
    """Cookies, people and accounts, joined by the most explicit evidence seen so far."""

    def __init__(self, *, freemail: frozenset[str] = FREEMAIL_DOMAINS) -> None:
        self.freemail = freemail
        self._person: dict[str, str] = {}  # anon node -> user node
        self._cookies: dict[str, set[str]] = {}  # user node -> its anon nodes (reverse index)
        self._account: dict[str, tuple[str, str]] = {}  # node -> (account id, via)

    def __len__(self) -> int:
        return len(self._account) + len(self._person)

    def resolve(self, *, user_id: str | None, anonymous_id: str | None) -> str | None:
        """The account of a person or cookie, if any evidence names one."""
        if user_id is not None:
            found = self._account.get(node_of("user", user_id))
            if found is not None:
                return found[0]
        if anonymous_id is not None:
            anon = node_of("anon", anonymous_id)
            found = self._account.get(anon)
            if found is not None:
                return found[0]
            user = self._person.get(anon)
            if user is not None:
                found = self._account.get(user)
                if found is not None:
                    return found[0]
        return None

    def apply(self, edge: IdentityEdge) -> bool:
        """Apply an edge learned elsewhere; return whether anything changed."""
        if edge.kind == "person":
            return self._apply_person(edge.node, edge.target)
        if edge.target is None:
            return self._account.pop(edge.node, None) is not None
        value = (edge.target, edge.via)
        if self._account.get(edge.node) == value:
            return False
        self._account[edge.node] = value
        return True

    def _apply_person(self, anon: str, user: str | None) -> bool:
        old = self._person.get(anon)
        if old == user:
            return False
        if old is not None:
            cookies = self._cookies[old]
            cookies.discard(anon)
            if not cookies:
                del self._cookies[old]
        if user is None:
            del self._person[anon]
        else:
            self._person[anon] = user
            self._cookies.setdefault(user, set()).add(anon)
        return True

    def forget(self, node: str) -> list[IdentityEdge]:
        """Tombstones for every edge of ``node`` (and the cookies linked to it), applied."""
        doomed = [("person", node), ("account", node)]
        doomed += [("person", anon) for anon in sorted(self._cookies.get(node, ()))]
        doomed += [("account", anon) for anon, _ in doomed[2:]]
        edges = [IdentityEdge(kind, n, None, "forget", 0.0) for kind, n in doomed]
        return [e for e in edges if self.apply(e)]

    def describe(self, node: str) -> dict[str, Any]:
        """What the graph knows about a node: its account and linked cookies or person."""
        account = self._account.get(node)
        return {
            "node": node,
            "account": account[0] if account else None,
            "via": account[1] if account else None,
            "person": self._person.get(node),
            "cookies": sorted(self._cookies.get(node, ())),
        }

    def edges(self) -> Iterator[IdentityEdge]:
        """Every live edge (for snapshots and tests)."""
        for anon, user in self._person.items():
            yield IdentityEdge("person", anon, user, "", 0.0)
        for node, (account, via) in self._account.items():
            yield IdentityEdge("account", node, account, via, 0.0)

    def observe(self, event: dict[str, Any], *, ts: float) -> list[IdentityEdge]:
        """Learn what an event says about identity; return the edges that changed.

        Most events repeat what the graph knows: those are answered from its dicts, without
        building an edge that would change nothing.
        """
        kind = event.get("type")
        user = _str_id(event.get("userId"))
        anon = _str_id(event.get("anonymousId"))
        if user is None:
            if anon is None:
                return []
            node = "anon:" + anon
        else:
            node = "user:" + user
        changed: list[IdentityEdge] = []
        if kind == "alias":
            previous = _str_id(event.get("previousId"))
            if previous is not None and user is not None and previous != user:
                # previousId is usually the cookie; when it is an old userId, both are users.
                changed += self._link(previous, node, "alias", ts)
        if anon is not None and user is not None:
            changed += self._link(anon, node, kind or "", ts)
        evidence = self._account_evidence(event)
        if evidence is not None:
            changed += self._claim(node, evidence[0], evidence[1], ts)
        return changed

    def _link(self, anon: str, user_node: str, via: str, ts: float) -> list[IdentityEdge]:
        anon_node = "anon:" + anon
        if self._person.get(anon_node) == user_node:
            return []  # known already: the edge would change nothing
        edge = IdentityEdge("person", anon_node, user_node, via, ts)
        return [edge] if self.apply(edge) else []

    def _claim(self, node: str, account: str, via: str, ts: float) -> list[IdentityEdge]:
        current = self._account.get(node)
        if current is not None:
            if current[0] == account and current[1] == via:
                return []  # known already: the edge would change nothing
            if VIA_RANK[current[1]] > VIA_RANK[via]:
                return []
        edge = IdentityEdge("account", node, account, via, ts)
        return [edge] if self.apply(edge) else []

    def _account_evidence(self, event: dict[str, Any]) -> tuple[str, str] | None:
        """The strongest (account, via) an event offers, if any."""
        if event.get("type") == "group":
            gid = _str_id(event.get("groupId"))
            if gid is not None:
                return gid, "group"
        context = event.get("context")
        if isinstance(context, dict):
            gid = _str_id(context.get("groupId"))
            if gid is not None:
                return gid, "context"
            holders = (event.get("traits"), context.get("traits"))
        else:
            holders = (event.get("traits"), None)
        for traits in holders:
            if not isinstance(traits, dict):
                continue
            company = traits.get("company")
            if isinstance(company, dict):
                cid = _str_id(company.get("id"))
                if cid is not None and len(cid) <= _MAX_ACCOUNT_ID:
                    return cid, "company"
            domain = email_domain(traits.get("email"), self.freemail)
            if domain is not None and len(domain) <= _MAX_ACCOUNT_ID:
                return domain, "email_domain"
        return None


def _str_id(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None
