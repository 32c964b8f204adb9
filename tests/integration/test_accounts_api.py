"""The account read API, `accounts top`, and model checkpoints in Redis across a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import orjson
import pytest
import redis

from intent_stream.embedded import free_port
from intent_stream.pipeline import iso
from intent_stream.readmodel import model_key
from intent_stream.scoring import load_checkpoint

from .conftest import settings_env, wait_until

pytestmark = pytest.mark.integration


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _journey(account: str, now: float) -> list[dict]:
    """Visits a week apart, an opportunity, a visit, a lost deal: 2 positive, 1 negative."""

    def event(name: str | None, at: float) -> dict:
        base = {"userId": f"{account}-p", "timestamp": iso(at), "context": {"groupId": account}}
        if name is None:
            return {**base, "type": "page", "properties": {"path": "/pricing", "topic": "AI"}}
        return {**base, "type": "track", "event": name}

    return [
        {
            "type": "group",
            "groupId": account,
            "userId": f"{account}-p",
            "timestamp": iso(now - 8 * 86400),
            "traits": {"industry": "Software", "employees": 300, "country": "DE"},
        },
        event(None, now - 7 * 86400),
        event(None, now - 60),
        event("Opportunity Created", now - 50),
        event(None, now - 45),
        event("Deal Lost", now - 40),
    ]


def test_account_api_cli_and_model_checkpoints(settings, start_worker, producer, tmp_path):
    bad_fit = tmp_path / "fit-model.pkl"
    bad_fit.write_bytes(b"not a pickle")
    settings = settings.replace(model_checkpoint_interval=0.5, fit_model_path=str(bad_fit))
    client = redis.Redis.from_url(settings.redis)
    key = model_key(settings.redis_prefix, "intent")
    client.set(key, b"corrupt checkpoint")
    try:
        worker = start_worker(settings)
        account = f"api-{uuid.uuid4().hex[:6]}.example"
        producer.send(
            settings.events_topic,
            key=account.encode(),
            value=orjson.dumps(_journey(account, time.time())),
        )
        producer.flush()

        def checkpointed() -> dict | None:
            blob = client.get(key)
            if blob is None or blob == b"corrupt checkpoint":
                return None
            return load_checkpoint(blob, "intent")

        objects = wait_until(checkpointed, timeout=60, what="an intent model checkpoint")
        assert objects["model"].n_labels == 3
        assert objects["model"].n_positive == 2
        assert objects["health"].n == 3
        assert objects["model"].max_blend == 0.5  # the setting's default, saved with it
        log = worker.log()
        assert "ignoring the intent model checkpoint" in log
        assert "fit model starts fresh" in log

        base = f"http://{settings.web_host}:{settings.web_port}"
        status, snap = wait_until(
            lambda: (r := _get(f"{base}/accounts/{account}"))[0] == 200 and r,
            timeout=30,
            what="the account in the read API",
        )
        assert snap["account_id"] == account
        assert snap["traits"] == {"industry": "Software", "employees": 300, "country": "DE"}
        assert snap["fit_band"] == "moderate"
        assert snap["fit_score"] == 50.0
        assert snap["signals"]["pricing_view"] > 0
        assert snap["reasons"]
        assert snap["updated_at"].endswith("Z")
        assert _get(f"{base}/accounts/nobody.example") == (
            404,
            {"error": "unknown account", "account_id": "nobody.example"},
        )
        status, top = _get(f"{base}/accounts?top=5")
        assert status == 200
        assert [row["account_id"] for row in top["accounts"]] == [account]
        assert _get(f"{base}/accounts?top=zero")[0] == 400

        cli = subprocess.run(
            [sys.executable, "-m", "intent_stream", "accounts", "top", "--n", "3", "--json"],
            env=settings_env(settings),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["accounts"][0]["account_id"] == account

        metrics = worker.metrics()
        assert "intent_stream_model_roc_auc " in metrics
        assert 'intent_stream_labels_learned_total{outcome="opportunity"} 2.0' in metrics

        # A new worker process restores the checkpoint before scoring anything; the blend's
        # cap is its own setting (3 labels would give 3 / 203 uncapped), not the saved one.
        worker.proc.terminate()
        worker.proc.wait(timeout=30)
        restarted = start_worker(settings.replace(web_port=free_port(), intent_max_blend=0.01))
        wait_until(
            lambda: 'intent_stream_model_labels{polarity="positive"} 2.0' in restarted.metrics(),
            timeout=60,
            what="the restarted worker to restore the intent model",
        )
        assert "restored the intent model (3 labels)" in restarted.log()
        assert "intent_stream_model_blend_ratio 0.01" in restarted.metrics()
    finally:
        client.delete(key, model_key(settings.redis_prefix, "fit"))
        client.close()
