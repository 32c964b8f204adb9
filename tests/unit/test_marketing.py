"""Channel, campaign and content type of a signal, and the bound on campaign labels."""

from __future__ import annotations

import pytest

from intent_stream.marketing import (
    CHANNELS,
    CONTENT_TYPES,
    MAX_CAMPAIGN_LENGTH,
    CampaignLabels,
    campaign_of,
    channel_of,
    content_type_of,
    dimensions,
    normalise_campaign,
)
from intent_stream.scoring import classify
from intent_stream.simulate import SimulationConfig, simulate

SITE = "https://www.vendor.example"


def _page(path="/", *, referrer="", campaign=None, url=None, **props):
    context = {"page": {"path": path, "url": url or SITE + path, "referrer": referrer}}
    if campaign is not None:
        context["campaign"] = campaign
    return {"type": "page", "properties": {"path": path, **props}, "context": context}


def _track(name, **props):
    return {"type": "track", "event": name, "properties": props}


@pytest.mark.parametrize(
    ("medium", "source", "channel"),
    [
        ("cpc", "google", "paid_search"),
        ("PPC", "bing", "paid_search"),
        ("cpc", "linkedin", "paid_social"),
        ("paid-social", "facebook", "paid_social"),
        ("social", "twitter", "social"),
        ("", "linkedin.com", "social"),
        ("organic", "google", "organic_search"),
        ("", "duckduckgo", "organic_search"),
        ("Email", "newsletter", "email"),
        ("display", "programmatic", "display"),
        ("retargeting", "adroll", "display"),
        ("referral", "g2", "referral"),
        ("conference", "saastr", "event"),
        ("partner", "aws-marketplace", "partner"),
        ("affiliate", "blog-network", "partner"),
        ("in-app", "product", "product"),
        ("carrier pigeon", "", "other"),
        ("", "someone", "other"),
    ],
)
def test_campaign_medium_and_source_decide_the_channel(medium, source, channel):
    event = _page(campaign={"name": "x", "medium": medium, "source": source})
    assert channel_of(event) == channel
    utm = _page(utm_medium=medium, utm_source=source)
    assert channel_of(utm) == channel


def test_utm_parameters_of_the_page_url_and_ad_click_ids_count_too():
    url = f"{SITE}/pricing?utm_source=google&utm_medium=cpc&utm_campaign=Brand%20Search"
    event = _page("/pricing", url=url)
    assert dimensions(event, "pricing_view") == ("paid_search", "brand_search", "pricing")
    assert channel_of(_page(url=f"{SITE}/?gclid=abc")) == "paid_search"
    assert channel_of(_page(url=f"{SITE}/?li_fat_id=abc")) == "paid_social"
    searched = _page(url=SITE + "/")
    searched["context"]["page"]["search"] = "?utm_medium=email&utm_source=nl"
    assert channel_of(searched) == "email"


@pytest.mark.parametrize(
    ("referrer", "channel"),
    [
        ("https://www.google.com/", "organic_search"),
        ("https://www.google.co.uk/search?q=x", "organic_search"),
        ("https://duckduckgo.com/", "organic_search"),
        ("https://www.linkedin.com/feed/", "social"),
        ("https://t.co/abc", "social"),
        ("https://mail.google.com/mail/u/0", "email"),
        ("https://news.ycombinator.com/", "referral"),
        ("https://www.g2.com/compare", "referral"),
        (f"{SITE}/blog/x", "direct"),  # internal navigation: no source of its own
        ("", "direct"),
        ("not a url", "direct"),
    ],
)
def test_without_a_campaign_the_referrer_decides(referrer, channel):
    assert channel_of(_page("/pricing", referrer=referrer), "pricing_view") == channel


def test_server_side_events_take_the_channel_of_their_signal():
    assert channel_of(_track("Email Opened"), "email_open") == "email"
    assert channel_of(_track("Email Clicked"), "email_click") == "email"
    assert channel_of(_track("Feature Used"), "product_usage") == "product"
    assert channel_of(_track("Webinar Attended"), "webinar") == "event"
    assert channel_of(_track("Demo Requested"), "demo_request") == "direct"


@pytest.mark.parametrize(
    ("event", "content"),
    [
        (_track("Whitepaper Downloaded"), "whitepaper"),
        (_track("Case Study Downloaded"), "case_study"),
        (_track("Ebook Downloaded"), "ebook"),
        (_track("Webinar Attended"), "webinar"),
        (_track("Pricing Viewed"), "pricing"),
        (_track("Demo Requested"), "demo"),
        (_track("Trial Started"), "trial"),
        (_track("Feature Used"), "product"),
        (_track("Content Downloaded", content_type="E-Book"), "ebook"),
        (_track("Content Downloaded", content_type="report"), "whitepaper"),
        (_track("Content Downloaded", content_type="Customer Story"), "case_study"),
        (_track("Content Downloaded", content_type="Infographic"), "other"),
        (_track("Whitepaper Downloaded", content_type="ebook"), "ebook"),  # explicit wins
        (_track("Email Opened", content_type="email"), "none"),
        (_track("Form Submitted", form_name="contact_sales"), "none"),
        (_page("/blog/five-mistakes"), "blog"),
        (_page("/docs/api"), "docs"),
        (_page("/pricing"), "pricing"),
        (_page("/compare/rival"), "comparison"),
        (_page("/vs/rival"), "comparison"),
        (_page("/resources/case-studies/security-retail"), "case_study"),
        (_page("/resources/webinars/security"), "webinar"),
        (_page("/resources/security-ebook"), "ebook"),
        (_page("/resources/security-guide"), "whitepaper"),
        (_page("/resources/security-report"), "whitepaper"),
        (_page("/blog/a-startup-guide"), "blog"),  # the section beats a weak word
        (_page("/blog/webinar-recap"), "webinar"),  # an asset word beats the section
        (_page("/resources/security-playbook"), "whitepaper"),
        (_page("/resources/overview"), "none"),
        (_page("/customers/acme"), "case_study"),
        (_page("/vs-rival"), "comparison"),  # no section: the comparison signal decides
        (_page("/features/sso"), "product"),
        (_page("/integrations"), "product"),
        (_page("/", category="Docs"), "docs"),
        (_page("/"), "none"),
    ],
)
def test_content_type(event, content):
    assert content_type_of(event, classify(event)) == content
    assert content in CONTENT_TYPES


def test_campaign_names_are_normalised_and_never_carry_people_or_ids():
    assert normalise_campaign("  Spring Launch 2026 ") == "spring_launch_2026"
    assert normalise_campaign("brand-search") == "brand-search"
    assert normalise_campaign("ABM.Q4") == "abm.q4"
    assert normalise_campaign("--") == "none"
    assert normalise_campaign("") == "none"
    assert normalise_campaign(42) == "none"
    assert normalise_campaign("jane.doe@acme.com") == "other"
    assert normalise_campaign("lead-00123456789") == "other"
    assert normalise_campaign("3f2b8c1e-4d5a-11ee-be56-0242ac120002") == "other"
    assert normalise_campaign("q" * 500) == "q" * MAX_CAMPAIGN_LENGTH
    assert campaign_of(_track("Email Opened", campaign_name="Security Nurture")) == (
        "security_nurture"
    )
    utm = _page(campaign={"name": "Context Wins"}, utm_campaign="props-lose")
    assert campaign_of(utm) == "context_wins"


def test_campaign_labels_keep_the_allowlist_and_the_first_n_names():
    labels = CampaignLabels(allow=["Always Kept"], cap=2)
    seen = [labels.label(c) for c in ("a", "b", "c", "a", "always_kept", "d", "b", "none")]
    assert seen == ["a", "b", "other", "a", "always_kept", "other", "b", "none"]
    only_allowed = CampaignLabels.from_setting("spring, Summer Sale", cap=0)
    assert only_allowed.allow == {"spring", "summer_sale"}
    assert [only_allowed.label(c) for c in ("spring", "summer_sale", "autumn")] == [
        "spring",
        "summer_sale",
        "other",
    ]
    with pytest.raises(ValueError, match="cap must be 0 or more"):
        CampaignLabels(cap=-1)


def test_simulated_journeys_cover_the_channels_and_content_types():
    channels, contents, campaigns = set(), set(), set()
    for event in simulate(SimulationConfig(accounts=150, days=60, seed=5)):
        signal = classify(event)
        if signal is None:
            continue
        channel, campaign, content = dimensions(event, signal)
        assert channel in CHANNELS
        assert content in CONTENT_TYPES
        channels.add(channel)
        contents.add(content)
        campaigns.add(campaign)
    assert channels >= {
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
    }
    assert contents >= {
        "whitepaper",
        "webinar",
        "case_study",
        "blog",
        "ebook",
        "pricing",
        "docs",
        "comparison",
        "demo",
        "trial",
        "product",
        "none",
    }
    assert "none" in campaigns
    assert 5 <= len(campaigns) <= 30  # few enough for the default cap of 50
