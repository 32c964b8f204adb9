"""Marketing dimensions of a signal: channel, campaign and content type, with bounded values.

Each classified signal (:func:`intent_stream.scoring.classify`) is counted in
``intent_stream_marketing_signals_total{signal,channel,campaign,content_type}``. The three
dimensions come from the Segment event alone (no state, no I/O):

``channel`` (:data:`CHANNELS`)
    from the campaign's ``medium`` and ``source`` (``context.campaign``, ``properties.utm_*``
    or the ``utm_*`` parameters of the page URL), else an ad click id in the page URL
    (``gclid``, ``msclkid``: paid search; ``fbclid``, ``li_fat_id``, ``ttclid``: paid social),
    else the host of an external referrer (``context.page.referrer``: a search engine,
    a social network, a webmail client or any other site), else what the signal itself says
    (email opens and clicks: ``email``; product usage: ``product``; webinars: ``event``),
    else ``direct``.
``content_type`` (:data:`CONTENT_TYPES`)
    from ``properties.content_type``, then the track event's name ("Whitepaper Downloaded"),
    then ``properties.category``, then the page path (asset words such as ``ebook`` or
    ``case-study`` anywhere, else the site section: ``/blog/...``, ``/docs/...``),
    then the signal (a pricing view is ``pricing``); ``other`` when a value is given but not
    recognised, ``none`` when nothing names one.
``campaign``
    ``context.campaign.name``, ``properties.utm_campaign``, ``properties.campaign_name``
    (Segment's email spec) or the page URL's ``utm_campaign``, normalised by
    :func:`normalise_campaign` (lower case, ``[a-z0-9._-]`` only, at most
    :data:`MAX_CAMPAIGN_LENGTH` characters; e-mail addresses and id-like values become
    ``other``), ``none`` when absent. Campaign names are free to choose, so
    :class:`CampaignLabels` bounds them before they become label values: allowlisted names
    always keep their name, other names keep theirs for the first ``cap`` distinct ones a
    worker sees, and every later name is counted as ``other``.

>>> body = {"type": "page", "properties": {"path": "/resources/data-ebook"},
...         "context": {"campaign": {"name": "Q4 Launch", "source": "LinkedIn",
...                                  "medium": "paid_social"}}}
>>> dimensions(body, "content_view")
('paid_social', 'q4_launch', 'ebook')
>>> dimensions({"type": "track", "event": "Email Opened",
...             "properties": {"campaign_name": "nurture-3"}}, "email_open")
('email', 'nurture-3', 'none')
>>> labels = CampaignLabels(allow=["brand-search"], cap=1)
>>> [labels.label(c) for c in ("spring", "brand-search", "summer", "spring", "none")]
['spring', 'brand-search', 'other', 'spring', 'none']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CHANNELS",
    "CONTENT_TYPES",
    "MAX_CAMPAIGN_LENGTH",
    "NONE",
    "OTHER",
    "CampaignLabels",
    "campaign_of",
    "channel_of",
    "content_type_of",
    "dimensions",
    "normalise_campaign",
]

#: Every value of the ``channel`` label.
CHANNELS = (
    "paid_search",
    "organic_search",
    "paid_social",
    "social",
    "email",
    "display",
    "referral",
    "direct",
    "event",
    "partner",
    "product",
    "other",
)
#: Every value of the ``content_type`` label.
CONTENT_TYPES = (
    "whitepaper",
    "webinar",
    "case_study",
    "blog",
    "ebook",
    "video",
    "pricing",
    "docs",
    "comparison",
    "demo",
    "trial",
    "product",
    "other",
    "none",
)
NONE = "none"
OTHER = "other"
MAX_CAMPAIGN_LENGTH = 40

# utm_medium values (normalised: lower case, '-' and ' ' as '_') -> channel.
_MEDIUMS: Mapping[str, str] = {
    **dict.fromkeys(
        ("cpc", "ppc", "paid_search", "paidsearch", "sem", "search_ads"), "paid_search"
    ),
    **dict.fromkeys(("organic", "organic_search", "seo"), "organic_search"),
    **dict.fromkeys(
        ("paid_social", "paidsocial", "social_paid", "social_ads", "sponsored"), "paid_social"
    ),
    **dict.fromkeys(("social", "social_media", "social_network", "organic_social", "sm"), "social"),
    **dict.fromkeys(("email", "e_mail", "newsletter", "mail", "nurture"), "email"),
    **dict.fromkeys(
        ("display", "banner", "cpm", "programmatic", "retargeting", "native"), "display"
    ),
    **dict.fromkeys(("referral", "link"), "referral"),
    **dict.fromkeys(
        ("event", "events", "conference", "tradeshow", "trade_show", "field", "webinar"), "event"
    ),
    **dict.fromkeys(
        ("partner", "partners", "affiliate", "reseller", "marketplace", "co_marketing"), "partner"
    ),
    **dict.fromkeys(("product", "in_app", "inapp", "app"), "product"),
}
# Hosts (registered domain's first label) of search engines, social networks and webmail.
_SEARCH = frozenset(
    {"google", "bing", "duckduckgo", "yahoo", "baidu", "yandex", "ecosia", "qwant", "brave"}
)
_SOCIAL = frozenset(
    {
        "linkedin",
        "lnkd",
        "facebook",
        "fb",
        "instagram",
        "twitter",
        "t",
        "x",
        "reddit",
        "youtube",
        "tiktok",
        "xing",
        "mastodon",
        "threads",
    }
)
_WEBMAIL = frozenset(
    {"mail.google.com", "outlook.live.com", "outlook.office.com", "mail.yahoo.com"}
)
_PAID_SEARCH_IDS = ("gclid", "gbraid", "wbraid", "msclkid")
_PAID_SOCIAL_IDS = ("fbclid", "li_fat_id", "ttclid", "twclid")
# A signal's own channel when the event names none (server-side email, product, webinar).
_SIGNAL_CHANNELS: Mapping[str, str] = {
    "email_open": "email",
    "email_click": "email",
    "product_usage": "product",
    "webinar": "event",
}

# Content-type words (properties.content_type / category, normalised) -> content type.
_CONTENT_WORDS: Mapping[str, str] = {
    **dict.fromkeys(
        ("whitepaper", "white_paper", "guide", "report", "research", "analyst_report"),
        "whitepaper",
    ),
    **dict.fromkeys(("webinar", "webinars", "webcast", "live_event"), "webinar"),
    **dict.fromkeys(
        ("case_study", "case_studies", "casestudy", "customer_story", "success_story"),
        "case_study",
    ),
    **dict.fromkeys(("blog", "blog_post", "article", "post", "news"), "blog"),
    **dict.fromkeys(("ebook", "e_book", "book"), "ebook"),
    **dict.fromkeys(("video", "videos", "podcast", "demo_video"), "video"),
    **dict.fromkeys(("pricing", "price", "plans"), "pricing"),
    **dict.fromkeys(("docs", "doc", "documentation", "api_reference", "tutorial"), "docs"),
    **dict.fromkeys(("comparison", "compare", "versus", "vs", "alternatives"), "comparison"),
    **dict.fromkeys(("demo", "demo_request"), "demo"),
    **dict.fromkeys(("trial", "free_trial", "signup", "sign_up"), "trial"),
    **dict.fromkeys(("product", "feature", "features", "integration", "platform"), "product"),
    **dict.fromkeys(("email", "newsletter", "none", "home", "homepage"), NONE),
}
# Track event names (lower case) -> content type.
_EVENT_CONTENT: Mapping[str, str] = {
    "whitepaper downloaded": "whitepaper",
    "report downloaded": "whitepaper",
    "case study downloaded": "case_study",
    "ebook downloaded": "ebook",
    "webinar registered": "webinar",
    "webinar attended": "webinar",
    "video played": "video",
    "video watched": "video",
    "pricing viewed": "pricing",
    "demo requested": "demo",
    "trial started": "trial",
    "feature used": "product",
    "product used": "product",
    "session started": "product",
}
# Page paths: words that name an asset wherever they appear, then the path's first segment
# (the site's section), then weaker words for gated assets under a resources section.
_PATH_ASSETS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("case-stud", "case_stud", "customer-stor"), "case_study"),
    (("webinar", "webcast"), "webinar"),
    (("ebook", "e-book"), "ebook"),
    (("whitepaper", "white-paper"), "whitepaper"),
)
_PATH_SECTIONS: Mapping[str, str] = {
    **dict.fromkeys(("customers", "case-studies", "stories"), "case_study"),
    **dict.fromkeys(("guides", "reports", "whitepapers"), "whitepaper"),
    **dict.fromkeys(("video", "videos", "watch"), "video"),
    **dict.fromkeys(("pricing", "plans"), "pricing"),
    **dict.fromkeys(("compare", "vs", "alternatives"), "comparison"),
    **dict.fromkeys(("blog", "articles", "news"), "blog"),
    **dict.fromkeys(("docs", "documentation", "developers", "api-reference"), "docs"),
    **dict.fromkeys(("demo", "book-a-demo"), "demo"),
    **dict.fromkeys(("trial", "free-trial", "signup", "sign-up"), "trial"),
    **dict.fromkeys(("product", "features", "platform", "integrations", "solutions"), "product"),
}
_PATH_GATED = ("-guide", "-report", "-playbook")
_SIGNAL_CONTENT: Mapping[str, str] = {
    "pricing_view": "pricing",
    "comparison_view": "comparison",
    "product_view": "product",
    "demo_request": "demo",
    "trial_start": "trial",
    "webinar": "webinar",
    "product_usage": "product",
}
_NOT_LABEL = re.compile(r"[^a-z0-9._-]+")
_ID_LIKE = re.compile(r"\d{9,}|[0-9a-f]{16,}|[0-9a-f]{8}-[0-9a-f]{4}-")


def _word(value: Any) -> str:
    """A short vocabulary key: ``'Case Study'`` -> ``'case_study'``; ``''`` if not a string."""
    if not isinstance(value, str):
        return ""
    return "_".join(value.strip().lower().replace("-", " ").split())[:64]


def normalise_campaign(value: Any) -> str:
    """A campaign name as a label value: lower case, ``[a-z0-9._-]``, at most 40 characters.

    Absent or empty names are ``none``; e-mail addresses and id-like values (long digit or
    hex runs, uuids) are ``other``, so a mis-tagged link cannot put a person or a record id
    into a label.

    >>> normalise_campaign("  Q4 ABM: Launch!  "), normalise_campaign(None)
    ('q4_abm_launch', 'none')
    >>> normalise_campaign("jane@acme.com"), normalise_campaign("promo-123456789012")
    ('other', 'other')
    >>> len(normalise_campaign("x" * 100))
    40
    """
    if not isinstance(value, str):
        return NONE
    text = value.strip().lower()
    if "@" in text:
        return OTHER
    label = _NOT_LABEL.sub("_", text).strip("_.-")[:MAX_CAMPAIGN_LENGTH].rstrip("_.-")
    if not label:
        return NONE
    return OTHER if _ID_LIKE.search(label) else label


_EMPTY: Mapping[str, Any] = {}
#: Entries each memo below keeps before it is emptied (their keys are free text).
_MEMO_MAX = 4096
_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class _Memo(dict[_K, _V]):
    """A bounded memo of a pure function of one string (or pair of strings): emptied when
    full, so it is exact and its memory bounded whatever the traffic. Signals repeat the
    same few campaign names, pages and referrers, whose parsing costs more than a lookup.

    A dict whose missing keys are computed: a call that finds its key is a dict lookup,
    with no Python frame (several per signal counted).

    >>> lengths = _Memo(len)
    >>> lengths("abc"), lengths("abc"), len(lengths)
    (3, 3, 1)
    """

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[_K], _V]) -> None:
        super().__init__()
        self._fn = fn

    def __missing__(self, key: _K) -> _V:
        if len(self) >= _MEMO_MAX:
            self.clear()
        found = self[key] = self._fn(key)
        return found

    __call__ = dict.__getitem__


def _given_of(value: Any, other: Any) -> str:
    """The first of ``value`` and ``other`` that is a string with more than spaces in it,
    else ``''`` (one call: three per signal counted).

    >>> _given_of(" ", "cpc"), _given_of("email", "cpc"), _given_of(None, 3)
    ('cpc', 'email', '')
    """
    if isinstance(value, str) and value.strip():
        return value
    return other if isinstance(other, str) and other.strip() else ""


def _query(page: Mapping[str, Any], url: str) -> dict[str, list[str]]:
    """The page URL's query parameters (``context.page.search`` or the URL's query)."""
    search = page.get("search")
    if not isinstance(search, str) or not search:
        search = url.partition("?")[2].partition("#")[0]
    return parse_qs(search.lstrip("?")) if search else {}


def _from_query(query: dict[str, list[str]], key: str) -> str:
    values = query.get(key)
    return values[0] if values else ""


def _host_of(url: str) -> str:
    """The host of an absolute URL, lower case, without ``www.`` (``''`` if none).

    >>> _host_of("https://WWW.Google.co.uk:443/search?q=x"), _host_of("/pricing")
    ('google.co.uk', '')
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "/" in scheme:
        return ""
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if 0 <= at < end:
            end = at
    host = rest[:end].rpartition("@")[2].partition(":")[0].lower()
    return host.removeprefix("www.")


_cached_host = _Memo(_host_of)


def _site(host: str) -> str:
    """The label of a host that names the site: ``'news.google.co.uk'`` -> ``'google'``."""
    parts = host.split(".")
    for part in parts[:-1]:
        if part in _SEARCH or part in _SOCIAL:
            return part
    return parts[-2] if len(parts) >= 2 else host


def _channel_from_campaign(medium: str, source: str) -> str:
    site = _site(_word(source).replace("_", "."))
    word = _word(medium)
    channel = _MEDIUMS.get(word)
    if channel == "paid_search" and site in _SOCIAL:
        return "paid_social"  # "cpc" bought on a social network
    if channel is not None:
        return channel
    if word in ("", "none", "(none)"):
        if site in _SEARCH:
            return "organic_search"
        if site in _SOCIAL:
            return "social"
    if "social" in word:
        return "social"
    if "search" in word:
        return "paid_search"
    return OTHER


_cached_campaign_channel: _Memo[tuple[str, str], str] = _Memo(
    lambda pair: _channel_from_campaign(*pair)
)


def _referrer_channel(referrer: str) -> str:
    """The channel of an external referrer's host."""
    if referrer in _WEBMAIL:
        return "email"
    site = _site(referrer)
    if site in _SEARCH:
        return "organic_search"
    if site in _SOCIAL:
        return "social"
    return "referral"


_cached_referrer_channel = _Memo(_referrer_channel)


def _path_content(path: str) -> str | None:
    """The content type a page path names (``path`` as given; compared in lower case)."""
    path = path.lower()
    for markers, content in _PATH_ASSETS:
        for marker in markers:
            if marker in path:
                return content
    section = _PATH_SECTIONS.get(path.split("/", 2)[1] if path.startswith("/") else "")
    if section is not None:
        return section
    if any(marker in path for marker in _PATH_GATED):
        return "whitepaper"
    return None


_cached_path_content = _Memo(_path_content)
_cached_url_content: _Memo[str, str | None] = _Memo(lambda url: _path_content(urlsplit(url).path))
_cached_campaign = _Memo(normalise_campaign)
_cached_word = _Memo(_word)


def channel_of(event: Mapping[str, Any], signal: str | None = None) -> str:
    """The marketing channel an event came through, one of :data:`CHANNELS`.

    >>> channel_of({"context": {"campaign": {"source": "google", "medium": "cpc"}}})
    'paid_search'
    >>> channel_of({"properties": {"utm_source": "facebook", "utm_medium": "cpc"}})
    'paid_social'
    >>> channel_of({"context": {"page": {"url": "https://v.example/?gclid=x1"}}})
    'paid_search'
    >>> channel_of({"context": {"page": {"url": "https://v.example/pricing",
    ...                                  "referrer": "https://www.google.com/"}}})
    'organic_search'
    >>> channel_of({"context": {"page": {"url": "https://v.example/",
    ...                                  "referrer": "https://news.ycombinator.com/"}}})
    'referral'
    >>> channel_of({"context": {"page": {"url": "https://v.example/pricing",
    ...                                  "referrer": "https://v.example/"}}})
    'direct'
    >>> channel_of({"type": "track", "event": "Feature Used"}, "product_usage")
    'product'
    """
    return dimensions(event, signal)[0]


def content_type_of(event: Mapping[str, Any], signal: str | None = None) -> str:
    """The kind of content an event is about, one of :data:`CONTENT_TYPES`.

    >>> content_type_of({"type": "track", "event": "Content Downloaded",
    ...                  "properties": {"content_type": "Case Study"}})
    'case_study'
    >>> content_type_of({"type": "track", "event": "Whitepaper Downloaded"})
    'whitepaper'
    >>> content_type_of({"type": "page", "properties": {"path": "/blog/five-mistakes"}})
    'blog'
    >>> content_type_of({"type": "page", "properties": {"path": "/"}}, "page_view")
    'none'
    >>> content_type_of({"type": "page", "properties": {"content_type": "Infographic"}})
    'other'
    """
    return dimensions(event, signal)[2]


def campaign_of(event: Mapping[str, Any]) -> str:
    """The event's campaign, normalised (:func:`normalise_campaign`); not yet bounded.

    >>> campaign_of({"context": {"campaign": {"name": "Brand Search"}}})
    'brand_search'
    >>> campaign_of({"context": {"page": {"url": "https://v.example/?utm_campaign=spring-26"}}})
    'spring-26'
    >>> campaign_of({"type": "page"})
    'none'
    """
    return dimensions(event)[1]


def dimensions(event: Mapping[str, Any], signal: str | None = None) -> tuple[str, str, str]:
    """``(channel, campaign, content_type)`` of an event that carries ``signal``.

    One pass over the event's fields (this runs for every signal the engine counts); the
    parsing of repeated strings (campaign names and sources, referrers, page paths) is
    memoised.
    """
    # Each object of the event, or an empty one (inline: this runs for every signal counted).
    context = event.get("context")
    context = context if isinstance(context, dict) else _EMPTY
    props = event.get("properties")
    props = props if isinstance(props, dict) else _EMPTY
    page = context.get("page")
    page = page if isinstance(page, dict) else _EMPTY
    campaign = context.get("campaign")
    campaign = campaign if isinstance(campaign, dict) else _EMPTY
    url = page.get("url") or props.get("url")
    if not isinstance(url, str):
        url = ""
    # The URL's query is read only when there is one (utm_* parameters, ad click ids).
    query = _query(page, url) if "?" in url or page.get("search") else None

    # Campaign fields: context.campaign, else properties.utm_*, else the URL's utm_*.
    medium = _given_of(campaign.get("medium"), props.get("utm_medium"))
    source = _given_of(campaign.get("source"), props.get("utm_source"))
    name = _given_of(campaign.get("name"), props.get("utm_campaign"))
    if query is not None:
        medium = medium or _from_query(query, "utm_medium")
        source = source or _from_query(query, "utm_source")
        name = name or _from_query(query, "utm_campaign")

    # -- channel
    if medium or source:
        channel = _cached_campaign_channel((medium, source))
    elif query is not None and any(key in query for key in _PAID_SEARCH_IDS):
        channel = "paid_search"
    elif query is not None and any(key in query for key in _PAID_SOCIAL_IDS):
        channel = "paid_social"
    else:
        referrer = page.get("referrer")
        referrer = _cached_host(referrer) if isinstance(referrer, str) else ""
        if referrer and referrer != _cached_host(url):
            channel = _cached_referrer_channel(referrer)
        elif signal is not None and signal in _SIGNAL_CHANNELS:
            channel = _SIGNAL_CHANNELS[signal]
        else:
            channel = "direct"

    # -- campaign
    if not name:
        value = props.get("campaign_name")
        name = value if isinstance(value, str) else ""
    campaign_label: str = _cached_campaign(name)

    return channel, campaign_label, _content_type(event, props, page, url, signal)


def _content_type(
    event: Mapping[str, Any],
    props: Mapping[str, Any],
    page: Mapping[str, Any],
    url: str,
    signal: str | None,
) -> str:
    given = props.get("content_type")
    if isinstance(given, str):
        word = _cached_word(given)
        if word:
            return _CONTENT_WORDS.get(word, OTHER)
    name = event.get("event")
    if isinstance(name, str) and event.get("type") == "track":
        found = _EVENT_CONTENT.get(name.strip().lower())
        if found is not None:
            return found
    category = props.get("category")
    if category is not None:
        found = _CONTENT_WORDS.get(_cached_word(category) if isinstance(category, str) else "")
        if found is not None:
            return found
    for source in (props, page):
        path = source.get("path")
        if isinstance(path, str) and path:
            found = _cached_path_content(path)
            break
    else:
        found = _cached_url_content(url) if "://" in url else None
    if found is not None:
        return found
    if signal is not None and signal in _SIGNAL_CONTENT:
        return _SIGNAL_CONTENT[signal]
    return NONE


class CampaignLabels:
    """Bounds the campaign label: allowlisted names, then the first ``cap`` distinct others.

    Parameters
    ----------
    allow : iterable of str
        Campaign names that always keep their name (normalised like the events' names).
    cap : int
        How many other distinct names keep theirs, first seen first served; later ones are
        ``other``. ``0`` keeps only the allowlist. The names seen are per worker process
        and start over when it restarts.

    >>> labels = CampaignLabels(allow=["Spring Launch"], cap=0)
    >>> labels.label("spring_launch"), labels.label("anything-else"), labels.label("none")
    ('spring_launch', 'other', 'none')
    >>> CampaignLabels.from_setting(" a, b ,", cap=5).allow == frozenset({"a", "b"})
    True
    """

    def __init__(self, *, allow: Iterable[str] = (), cap: int = 50) -> None:
        if cap < 0:
            raise ValueError("cap must be 0 or more")
        self.allow = frozenset(normalise_campaign(a) for a in allow) - {NONE, OTHER}
        self.cap = cap
        self._seen: set[str] = set()

    @classmethod
    def from_setting(cls, allow: str, *, cap: int) -> CampaignLabels:
        """From a comma-separated allowlist (the ``marketing_campaigns`` setting)."""
        return cls(allow=[a for a in allow.split(",") if a.strip()], cap=cap)

    def label(self, campaign: str) -> str:
        """The label value for a normalised campaign name."""
        if campaign in self.allow or campaign in (NONE, OTHER) or campaign in self._seen:
            return campaign
        if len(self._seen) < self.cap:
            self._seen.add(campaign)
            return campaign
        return OTHER
