"""Storefront load test: what a shop's backends send us, over HTTP and gRPC, with real rows as payloads.

One simulated storefront backend (a locust user) repeats a visit mix:

* **page view** (weight 10): score ~100 ad candidates for the page's ad slots (``/v1/ads/ctr`` | ``ScoreAds``);
  a search-rank or recommendation call joins it once those task routes exist (add them to :data:`PAGE_EXTRAS`);
* **product view** (weight 5): re-score the 1 sponsored candidate shown next to a product;
* **chat session** (weight 1, "now and then"): 2-4 customer messages in one session (``/v1/chat`` | ``Chat``).

Half the users speak HTTP (``FastHttpUser``), half gRPC (``shopinfer.v1.TaskService`` over ``grpc`` made
gevent-cooperative). Ad candidates are rows of the Criteo sample, chat messages Bitext customer utterances,
both from ``DATA_DIR`` (fixed seed). Stats names are ``<proto> <call>``, e.g. ``grpc ScoreAds x100``.

Headless example (loopback only; ``--grpc-host`` defaults to the HTTP host's address on port 8001)::

    python -m locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --grpc-host 127.0.0.1:8001 \\
        --headless -u 16 -r 16 -t 60s --csv /tmp/storefront --only-summary

Knobs (env): ``STOREFRONT_CANDIDATES`` (100), ``STOREFRONT_CHAT=0`` to leave chat out, ``STOREFRONT_THINK_MS``
("10,50": each user waits 10-50 ms between visits, as a backend thread serving shoppers does; "0,0" saturates).
The service's admission control answers overload with 503 / RESOURCE_EXHAUSTED, which locust counts as failures:
raise the users until they appear to find a pod's capacity.
"""

from __future__ import annotations

import csv
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import FastHttpUser, User, between, events, task
from locust.env import Environment

from app.grpc.generated.shopinfer.v1 import tasks_pb2 as pb
from app.grpc.generated.shopinfer.v1 import tasks_pb2_grpc as pb_grpc
from app.grpc.task_messages import encode_score_ads
from loadtest.harness.criteo import request_rows

grpc_gevent.init_gevent()  # grpc's completion queue must yield to gevent, or one gRPC user blocks them all

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data"))
CTR_DATA = DATA_DIR / "ctr" / "criteo_kaggle_train_10k.txt"
CHAT_DATA = DATA_DIR / "chatbot" / "bitext" / "bitext_customer_support_llm_training_v1.csv"
CANDIDATES = int(os.environ.get("STOREFRONT_CANDIDATES", "100"))
THINK_S = [float(ms) / 1000 for ms in os.environ.get("STOREFRONT_THINK_MS", "10,50").split(",")]
WITH_CHAT = os.environ.get("STOREFRONT_CHAT", "1") != "0"
RNG = random.Random(20240611)
PAGE_EXTRAS: list[str] = []
"""Calls a page view adds once their task routes exist (e.g. "RankSearch", "Recommend")."""


def ctr_rows(limit: int = 3000) -> list[dict[str, Any]]:
    """Criteo rows as a request carries them: ints for I1..I13, hex strings for C1..C26, missing fields absent."""
    if not CTR_DATA.is_file():
        raise SystemExit(f"storefront load test: {CTR_DATA} not found (set DATA_DIR)")
    return request_rows(CTR_DATA, limit)


def chat_messages(limit: int = 2000) -> list[str]:
    if not CHAT_DATA.is_file():
        raise SystemExit(f"storefront load test: {CHAT_DATA} not found (set DATA_DIR or STOREFRONT_CHAT=0)")
    with open(CHAT_DATA, newline="") as f:
        messages = [r["instruction"] for r in csv.DictReader(f)]
    return RNG.sample(messages, min(limit, len(messages)))


ROWS = ctr_rows()
MESSAGES = chat_messages() if WITH_CHAT else []


def ad_request(n: int) -> dict[str, Any]:
    picked = RNG.sample(ROWS, n)
    return {"candidates": [{"ad_id": f"ad-{i}", "features": r} for i, r in enumerate(picked)]}


# Pre-built payloads: the load generator shares 2 cores with the server, so it must not build them per call.
PAGES = [ad_request(CANDIDATES) for _ in range(32)]
SINGLES = [ad_request(1) for _ in range(256)]
PAGES_PB = [encode_score_ads(d) for d in PAGES]  # compact form: each feature name once per request
SINGLES_PB = [encode_score_ads(d) for d in SINGLES]


@events.init_command_line_parser.add_listener
def _args(parser: Any) -> None:
    parser.add_argument(
        "--grpc-host", default="", help="gRPC target HOST:PORT (default: the --host address, port 8001)"
    )


def grpc_target(environment: Environment) -> str:
    given = getattr(environment.parsed_options, "grpc_host", "") if environment.parsed_options else ""
    if given:
        return str(given)
    return f"{urlsplit(environment.host or 'http://127.0.0.1').hostname}:8001"


class StorefrontHttp(FastHttpUser):
    """A storefront backend calling the REST task routes."""

    wait_time = between(THINK_S[0], THINK_S[-1])

    @task(10)
    def page_view(self) -> None:
        self.client.post("/v1/ads/ctr", json=RNG.choice(PAGES), name=f"http ScoreAds x{CANDIDATES}")

    @task(5)
    def product_view(self) -> None:
        self.client.post("/v1/ads/ctr", json=RNG.choice(SINGLES), name="http ScoreAds x1")

    @task(1 if WITH_CHAT else 0)
    def chat_session(self) -> None:
        session = f"http-{RNG.getrandbits(32):08x}"
        for message in RNG.sample(MESSAGES, RNG.randint(2, 4)):
            self.client.post("/v1/chat", json={"message": message, "session_id": session}, name="http Chat")


class StorefrontGrpc(User):
    """The same backend over ``shopinfer.v1.TaskService``; each call is reported to locust like an HTTP one."""

    wait_time = between(THINK_S[0], THINK_S[-1])

    def on_start(self) -> None:
        self.channel = grpc.insecure_channel(grpc_target(self.environment))
        self.stub = pb_grpc.TaskServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def _call(self, name: str, method: Callable[..., Any], request: Any) -> None:
        started = time.perf_counter()
        error: BaseException | None = None
        size = 0
        try:
            size = method(request, timeout=10).ByteSize()
        except grpc.RpcError as e:
            error = e
        self.environment.events.request.fire(
            request_type="grpc", name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=size, exception=error, context={},
        )  # fmt: skip

    @task(10)
    def page_view(self) -> None:
        self._call(f"grpc ScoreAds x{CANDIDATES}", self.stub.ScoreAds, RNG.choice(PAGES_PB))

    @task(5)
    def product_view(self) -> None:
        self._call("grpc ScoreAds x1", self.stub.ScoreAds, RNG.choice(SINGLES_PB))

    @task(1 if WITH_CHAT else 0)
    def chat_session(self) -> None:
        session = f"grpc-{RNG.getrandbits(32):08x}"
        for message in RNG.sample(MESSAGES, RNG.randint(2, 4)):
            self._call("grpc Chat", self.stub.Chat, pb.ChatRequest(message=message, session_id=session))
