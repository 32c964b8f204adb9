"""Security settings reach every client the engine opens; secrets are never shown.

The embedded Tansu broker has no SASL or TLS listener, so these tests check the options each
client is built with (the pure functions of intent_stream.topics and app.redis_options) and,
by reading the source, that every client constructor in the package takes them.
"""

from __future__ import annotations

import re
import ssl
import subprocess
from pathlib import Path

import pytest

from intent_stream.app import create_app, redis_options
from intent_stream.cli import main
from intent_stream.settings import Settings, SettingsError
from intent_stream.topics import (
    aiokafka_client_options,
    faust_broker_credentials,
    kafka_client_options,
)

PACKAGE = Path(__file__).resolve().parents[2] / "intent_stream"

SASL = {
    "kafka": "k1:9093,k2:9093",
    "kafka_security_protocol": "SASL_PLAINTEXT",
    "kafka_sasl_mechanism": "SCRAM-SHA-256",
    "kafka_username": "engine",
    "kafka_password": "kafka-s3cret",
}


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    """A self-signed CA, certificate and key written with the openssl command."""
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=intent-stream-test", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return {"kafka_ssl_cafile": str(cert), "kafka_ssl_certfile": str(cert),
            "kafka_ssl_keyfile": str(key)}  # fmt: skip


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_reaches_kafka_python_aiokafka_and_faust(mechanism):
    s = Settings(**{**SASL, "kafka_sasl_mechanism": mechanism})
    expected = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "engine",
        "sasl_plain_password": "kafka-s3cret",
    }
    for options in (kafka_client_options(s), aiokafka_client_options(s)):
        assert options["bootstrap_servers"] == ["k1:9093", "k2:9093"]
        assert expected.items() <= options.items()
    creds = faust_broker_credentials(s)
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    assert credentials_to_aiokafka_auth(creds) == {**expected, "ssl_context": None}


def test_tls_and_sasl_ssl_reach_every_client_kind(tls_files):
    s = Settings(**{**SASL, "kafka_security_protocol": "SASL_SSL", **tls_files})
    kp = kafka_client_options(s)
    assert kp["security_protocol"] == "SASL_SSL"
    assert kp["ssl_cafile"] == tls_files["kafka_ssl_cafile"]
    assert kp["ssl_certfile"] == tls_files["kafka_ssl_certfile"]
    assert kp["ssl_keyfile"] == tls_files["kafka_ssl_keyfile"]
    ak = aiokafka_client_options(s)
    assert isinstance(ak["ssl_context"], ssl.SSLContext)
    assert ak["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    auth = credentials_to_aiokafka_auth(faust_broker_credentials(s))
    assert auth["security_protocol"] == "SASL_SSL"
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    plain_tls = Settings(kafka="k:9093", kafka_security_protocol="SSL", **tls_files)
    auth = credentials_to_aiokafka_auth(faust_broker_credentials(plain_tls))
    assert auth["security_protocol"] == "SSL"
    assert "sasl_mechanism" not in kafka_client_options(plain_tls)


def test_the_clients_accept_the_options_they_are_given(tls_files):
    """Every key we pass is a configuration key of the client it goes to (no typo can be
    silently ignored or rejected at start-up), and aiokafka builds with them."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    s = Settings(**{**SASL, "kafka_security_protocol": "SASL_SSL", **tls_files})
    for client in (KafkaAdminClient, KafkaConsumer, KafkaProducer):
        assert set(kafka_client_options(s)) <= set(client.DEFAULT_CONFIG), client
    import asyncio

    async def build() -> None:
        for cls in (AIOKafkaConsumer, AIOKafkaProducer):
            client = cls(**aiokafka_client_options(s))
            inner = getattr(client, "_client", None) or client.client
            assert inner._security_protocol == "SASL_SSL"
            assert inner._sasl_mechanism == "SCRAM-SHA-256"
            assert inner._sasl_plain_password == "kafka-s3cret"
            assert inner._ssl_context is not None
            await client.stop()

    asyncio.run(build())


def test_the_faust_app_gets_the_credentials():
    s = Settings(**SASL, redis="redis://127.0.0.1:1/0")
    engine = create_app(s)
    creds = engine.app.conf.broker_credentials
    assert creds.username == "engine"
    assert creds.mechanism.value == "SCRAM-SHA-256"
    assert "kafka-s3cret" not in repr(creds)


def test_every_kafka_client_in_the_package_takes_the_shared_options():
    """Each Kafka client constructor call passes kafka_client_options or
    aiokafka_client_options; the embedded launcher's probe (its own loopback Tansu) and the
    public IntentClient (which takes producer_options from the caller) are the exceptions."""
    call = re.compile(r"\b(KafkaProducer|KafkaConsumer|KafkaAdminClient|AIOKafka\w+)\(")
    exempt = {"embedded.py", "client.py"}
    seen = 0
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for match in call.finditer(text):
            if path.name in exempt:
                continue
            seen += 1
            window = text[match.end() : match.end() + 400]
            # consumer_options (alerts/tail.py) builds on kafka_client_options.
            assert re.search(r"\*\*((aio)?kafka_client_options|consumer_options)\(", window), (
                f"{path.name}: {match.group(0)} without the shared options"
            )
    assert seen >= 8


def test_send_passes_security_options_to_its_producer():
    text = (PACKAGE / "cli.py").read_text()
    assert "producer_options={" in text
    assert "kafka_client_options(settings).items()" in text


def test_redis_password_user_and_tls_ca_reach_the_clients(tmp_path):
    import redis
    import redis.asyncio as aioredis

    ca = tmp_path / "ca.pem"
    ca.write_text("not used until a connection is made")
    s = Settings(
        redis="rediss://cache.internal:6380/0",
        redis_username="engine",
        redis_password="redis-s3cret",
        redis_ssl_cafile=str(ca),
    )
    assert redis_options(s) == {
        "password": "redis-s3cret",
        "username": "engine",
        "ssl_ca_certs": str(ca),
    }
    for module in (redis, aioredis):
        client = module.Redis.from_url(s.redis, **redis_options(s))
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["username"] == "engine"
        assert kwargs["password"] == "redis-s3cret"
        assert kwargs["ssl_ca_certs"] == str(ca)
        assert "SSL" in client.connection_pool.connection_class.__name__
    # A plain URL takes no ssl_* argument (its connection class would reject it).
    assert redis_options(Settings(redis="redis://r:6379/0", redis_password="p")) == {
        "password": "p"
    }
    with pytest.raises(SettingsError, match="INTENT_STREAM_REDIS_SSL_CAFILE"):
        Settings(redis="redis://r:6379/0", redis_ssl_cafile=str(ca))


def test_bad_security_settings_name_the_variable():
    with pytest.raises(SettingsError, match="INTENT_STREAM_KAFKA_SECURITY_PROTOCOL"):
        Settings(kafka_security_protocol="TLS")
    with pytest.raises(SettingsError, match="INTENT_STREAM_KAFKA_SASL_MECHANISM"):
        Settings(**{**SASL, "kafka_sasl_mechanism": "GSSAPI"})
    with pytest.raises(SettingsError, match="INTENT_STREAM_KAFKA_USERNAME"):
        Settings(kafka_security_protocol="SASL_SSL")
    with pytest.raises(SettingsError, match="go together"):
        Settings(kafka_ssl_certfile="/c.pem")


def test_settings_output_never_shows_a_secret(capsys, monkeypatch):
    secrets = {
        "INTENT_STREAM_KAFKA_PASSWORD": "kafka-s3cret",
        "INTENT_STREAM_REDIS_PASSWORD": "redis-s3cret",
        "INTENT_STREAM_WRITE_KEYS": "wk-s3cret",
        "INTENT_STREAM_PSEUDONYMISE_KEY": "hmac-s3cret",
        "INTENT_STREAM_WEBHOOK": "https://hooks.example/T0/B0/s3cret",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    for argv in (["settings"], ["settings", "--markdown"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        for value in secrets.values():
            assert value not in out
    assert "kafka-s3cret" not in repr(Settings(**SASL))


def test_the_collector_and_web_server_bind_to_loopback_by_default():
    s = Settings()
    assert s.web_host == "127.0.0.1"
    assert s.collector_host == "127.0.0.1"
