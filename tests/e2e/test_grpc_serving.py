"""gRPC on the real server (``python -m app``): clients we did not write (tritonclient.grpc, Triton's
perf_analyzer), the shopinfer.v1 task RPCs against their REST twins, health, reflection, limits, one batch shared
by an HTTP and a gRPC request, and draining on SIGTERM."""

from __future__ import annotations

import concurrent.futures as cf
import json
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from app.grpc.generated.shopinfer.v1 import tasks_pb2, tasks_pb2_grpc
from app.tasks.ctr.features import CtrFeaturizer
from tests.fixtures.checks import expect_status
from tests.fixtures.ctr_model import publish_ctr_version, raw_records, reference_scores
from tests.fixtures.servers import ServerFactory, ServerProcess, serving, wait_until

TOKEN = "grpc-test-token"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """One server for the module: ad-ctr v1, admin API on, gRPC on a free port; one worker process, so repository
    control and batching act on the process the calls reach (worker pools: tests/e2e/test_storefront_load.py)."""
    root = tmp_path_factory.mktemp("grpc")
    repo = root / "repo"
    repo.mkdir()
    publish_ctr_version(repo, seed=0)
    env = {"APP_ADMIN_TOKEN": TOKEN, "APP_REQUIRED_MODELS": "ad-ctr", "APP_WORKERS": "1"}
    with serving(repo, root, env, until="/v2/health/ready", timeout_s=90) as server:
        yield server, repo


def _inputs(repo: Path, records: list[dict[str, object]]) -> dict[str, np.ndarray]:
    return CtrFeaturizer.load(repo / "ad-ctr" / "1" / "preprocess.json").transform_records(records)


def _features(row: dict[str, object]) -> tasks_pb2.Features:
    return tasks_pb2.Features(
        ints={k: v for k, v in row.items() if isinstance(v, int)},
        strings={k: v for k, v in row.items() if isinstance(v, str)},
    )  # fmt: skip


def test_tritonclient_grpc_metadata_config_infer_and_errors(served: tuple[ServerProcess, Path]) -> None:
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    server, repo = served
    client = grpcclient.InferenceServerClient(server.grpc_target)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("ad-ctr")
    assert client.is_model_ready("ad-ctr", "1")
    with pytest.raises(InferenceServerException, match="no version 2"):  # unknown version: NOT_FOUND, like HTTP 404
        client.is_model_ready("ad-ctr", "2")
    meta = client.get_server_metadata(as_json=True)
    assert meta["name"] == "shopinfer" and "model_repository" in meta["extensions"]
    model = client.get_model_metadata("ad-ctr", as_json=True)
    assert model["versions"] == ["1"] and model["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in model["inputs"]] == [
        ("dense", "FP32", ["-1", "13"]), ("sparse", "INT64", ["-1", "26"])]  # fmt: skip
    config = client.get_model_config("ad-ctr", as_json=True)["config"]
    assert config["max_batch_size"] == "256" or config["max_batch_size"] == 256
    assert [i["dims"] for i in config["input"]] == [["13"], ["26"]]

    records = raw_records(7, offset=8200)
    x = _inputs(repo, records)
    expected = reference_scores(repo / "ad-ctr" / "1", records)
    dense = grpcclient.InferInput("dense", list(x["dense"].shape), "FP32")
    dense.set_data_from_numpy(x["dense"])
    sparse = grpcclient.InferInput("sparse", list(x["sparse"].shape), "INT64")
    sparse.set_data_from_numpy(x["sparse"])
    result = client.infer("ad-ctr", [dense, sparse], outputs=[grpcclient.InferRequestedOutput("pctr")],
                          request_id="g-1", model_version="1", priority=1, timeout=5_000_000)  # fmt: skip
    np.testing.assert_allclose(result.as_numpy("pctr").reshape(-1), expected, atol=1e-6)
    assert result.get_response().id == "g-1" and result.get_response().model_version == "1"

    with pytest.raises(InferenceServerException, match="not in the repository; models served: ad-ctr") as e:
        client.infer("nope", [dense, sparse])
    assert e.value.status() == "StatusCode.NOT_FOUND"
    bad = grpcclient.InferInput("dense", [7, 12], "FP32")
    bad.set_data_from_numpy(x["dense"][:, :12].copy())
    with pytest.raises(InferenceServerException, match="shape") as e:
        client.infer("ad-ctr", [bad, sparse])
    assert e.value.status() == "StatusCode.INVALID_ARGUMENT"
    client.close()


def test_typed_contents_give_the_same_scores_as_raw_contents(served: tuple[ServerProcess, Path]) -> None:
    from app.grpc.generated import grpc_service_pb2 as pb
    from app.grpc.generated import grpc_service_pb2_grpc as pb_grpc

    server, repo = served
    records = raw_records(3, offset=8300)
    x = _inputs(repo, records)
    req = pb.ModelInferRequest(model_name="ad-ctr")
    req.inputs.add(name="dense", datatype="FP32", shape=x["dense"].shape).contents.fp32_contents.extend(
        x["dense"].ravel().tolist()
    )
    req.inputs.add(name="sparse", datatype="INT64", shape=x["sparse"].shape).contents.int64_contents.extend(
        x["sparse"].ravel().tolist()
    )
    with grpc.insecure_channel(server.grpc_target) as channel:
        resp = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(req, timeout=10)
    got = np.frombuffer(resp.raw_output_contents[0], "<f4")
    np.testing.assert_allclose(got, reference_scores(repo / "ad-ctr" / "1", records), atol=1e-6)


def test_score_ads_rpc_matches_the_rest_route_and_maps_errors(served: tuple[ServerProcess, Path]) -> None:
    server, _ = served
    records = raw_records(100, offset=8400)
    body = {"context": {"I1": 2}, "candidates": [{"ad_id": f"ad{i}", "features": r} for i, r in enumerate(records)]}
    http = server.post("/v1/ads/ctr", json=body).json()
    msg = tasks_pb2.ScoreAdsRequest(context=tasks_pb2.Features(ints={"I1": 2}))
    for i, r in enumerate(records):
        msg.candidates.add(ad_id=f"ad{i}", features=_features(r))
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        resp = stub.ScoreAds(msg, timeout=10, metadata=(("priority", "high"), ("x-request-id", "rid-1")))
        assert (resp.model, resp.version) == (http["model"], http["version"])
        assert [s.ad_id for s in resp.scores] == [s["ad_id"] for s in http["scores"]]
        np.testing.assert_allclose([s.pctr for s in resp.scores], [s["pctr"] for s in http["scores"]], atol=1e-7)

        cases = [
            (tasks_pb2.ScoreAdsRequest(), grpc.StatusCode.INVALID_ARGUMENT, "invalid_request"),
            (tasks_pb2.ScoreAdsRequest(candidates=[tasks_pb2.AdCandidate(ad_id="a", features=tasks_pb2.Features(ints={"Z9": 1}))]),
             grpc.StatusCode.INVALID_ARGUMENT, "unknown_feature"),
            (tasks_pb2.ScoreAdsRequest(candidates=[tasks_pb2.AdCandidate(ad_id="a")] * 1001),
             grpc.StatusCode.INVALID_ARGUMENT, "too_many_candidates"),
            (tasks_pb2.ScoreAdsRequest(candidates=[tasks_pb2.AdCandidate(ad_id="a")], model_version=9),
             grpc.StatusCode.NOT_FOUND, "model_not_found"),
        ]  # fmt: skip
        for request, code, error_code in cases:
            with pytest.raises(grpc.RpcError) as err:
                stub.ScoreAds(request, timeout=10)
            assert err.value.code() == code, err.value.details()
            assert dict(err.value.trailing_metadata())["shopinfer-error-code"] == error_code
            if error_code == "unknown_feature":  # the same message as HTTP: the valid names are listed
                assert "valid features: C1," in (err.value.details() or ""), err.value.details()
        with pytest.raises(grpc.RpcError) as err:
            stub.ScoreAds(msg, timeout=10, metadata=(("priority", "urgent"),))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "priority" in err.value.details()
        with pytest.raises(grpc.RpcError) as err:  # the client's deadline passes before the work can run
            stub.ScoreAds(msg, timeout=0.0005)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    metrics = server.get("/metrics").text
    assert re.search(
        r'inference_requests_total\{code="ok",endpoint="grpc_ctr",model="ad-ctr",outcome="ok",version="1"\} [1-9]',
        metrics,
    )


def test_columnar_body_scores_exactly_like_rows_and_the_rpc(served: tuple[ServerProcess, Path]) -> None:
    """The same 100 candidates as rows, as columns (``POST /v1/ads/ctr``) and as ``ScoreAds``: identical scores
    from the real server, and the reference's."""
    from app.tasks.ctr.columns import to_columns

    server, repo = served
    records = raw_records(100, offset=8600)
    rows = {"context": {"I1": 2}, "candidates": [{"ad_id": f"ad{i}", "features": r} for i, r in enumerate(records)]}
    columns = to_columns(rows)
    assert len(columns["columns"]) > 30 and "I1" in columns["columns"], sorted(columns["columns"])
    by_rows, by_columns = server.post("/v1/ads/ctr", json=rows), server.post("/v1/ads/ctr", json=columns)
    expect_status(by_rows, 200)
    expect_status(by_columns, 200)
    assert by_columns.json()["scores"] == by_rows.json()["scores"], server.saw(by_rows, by_columns)
    msg = tasks_pb2.ScoreAdsRequest(context=tasks_pb2.Features(ints={"I1": 2}))
    for i, r in enumerate(records):
        msg.candidates.add(ad_id=f"ad{i}", features=_features(r))
    with grpc.insecure_channel(server.grpc_target) as channel:
        resp = tasks_pb2_grpc.TaskServiceStub(channel).ScoreAds(msg, timeout=10)
    assert [(s.ad_id, s.pctr) for s in resp.scores] == [(s["ad_id"], s["pctr"]) for s in by_columns.json()["scores"]]
    expected = reference_scores(repo / "ad-ctr" / "1", [{"I1": 2, **r} for r in records])
    np.testing.assert_allclose([s["pctr"] for s in by_columns.json()["scores"]], expected, atol=1e-5, rtol=0)


def test_health_is_serving_only_when_ready_and_reflection_lists_the_services(
    served: tuple[ServerProcess, Path],
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server, _ = served
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "inference.GRPCInferenceService", "shopinfer.v1.TaskService", "liveness"):
            assert (
                health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                == health_pb2.HealthCheckResponse.SERVING
            )
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        asks = [reflection_pb2.ServerReflectionRequest(list_services=""),
                reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService")]  # fmt: skip
        listed, described = list(reflect.ServerReflectionInfo(iter(asks), timeout=5))
    names = {s.name for s in listed.list_services_response.service}
    assert {"inference.GRPCInferenceService", "shopinfer.v1.TaskService", "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto


def test_oversized_messages_fail_with_a_clear_resource_exhausted(served: tuple[ServerProcess, Path]) -> None:
    server, _ = served
    huge = tasks_pb2.ChatRequest(message="x" * (9 * 1024 * 1024))
    with grpc.insecure_channel(server.grpc_target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            tasks_pb2_grpc.TaskServiceStub(channel).Chat(huge, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in (err.value.details() or "")


def test_repository_load_and_unload_need_the_bearer_token(served: tuple[ServerProcess, Path]) -> None:
    grpcclient = pytest.importorskip("tritonclient.grpc")
    from tritonclient.utils import InferenceServerException

    server, _ = served
    client = grpcclient.InferenceServerClient(server.grpc_target)
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {(m["name"], m["version"], m["state"]) for m in index} == {("ad-ctr", "1", "READY")}
    with pytest.raises(InferenceServerException) as e:
        client.unload_model("ad-ctr")
    assert e.value.status() == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as e:
        client.unload_model("ad-ctr", headers={"authorization": "Bearer wrong"})
    assert e.value.status() == "StatusCode.PERMISSION_DENIED"
    auth = {"authorization": f"Bearer {TOKEN}"}
    client.unload_model("ad-ctr", headers=auth)
    assert not client.is_model_ready("ad-ctr") and not client.is_server_ready()
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:  # readiness follows, liveness does not
        health = health_pb2_grpc.HealthStub(channel)
        states = {name: health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
                  for name in ("", "shopinfer.v1.TaskService", "liveness")}  # fmt: skip
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert states == {"": not_serving, "shopinfer.v1.TaskService": not_serving, "liveness": serving}
    client.load_model("ad-ctr", headers=auth)
    assert client.is_model_ready("ad-ctr") and client.is_server_ready()
    client.close()


def _loads(server: ServerProcess, event: str) -> float:
    """``model_load_events_total`` of ad-ctr v1 summed over every worker (metrics are merged across workers)."""
    labels = (f'event="{event}"', 'model="ad-ctr"', 'version="1"')
    return sum(float(line.rsplit(" ", 1)[1]) for line in server.get("/metrics").text.splitlines()
               if line.startswith("model_load_events_total{") and all(x in line for x in labels))  # fmt: skip


def test_repository_control_over_grpc_reaches_every_worker(ctr_repo: Path, start_server: ServerFactory) -> None:
    """Two workers share the gRPC port; the call reaches one, its sibling repeats it (app.pod.broadcast)."""
    server = start_server(ctr_repo, APP_WORKERS="2", APP_ADMIN_TOKEN=TOKEN, APP_REQUIRED_MODELS="ad-ctr")
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 90, "both workers ready")
    assert _loads(server, "load") == 2 and _loads(server, "unload") == 0
    auth = (("authorization", f"Bearer {TOKEN}"),)
    from app.grpc.generated import grpc_service_pb2 as pb
    from app.grpc.generated import grpc_service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        pb_grpc.GRPCInferenceServiceStub(channel).RepositoryModelUnload(
            pb.RepositoryModelUnloadRequest(model_name="ad-ctr"), metadata=auth, timeout=30
        )
    wait_until(lambda: _loads(server, "unload") == 2, 30, "ad-ctr unloaded by both workers")
    wait_until(lambda: server.get("/v2/health/ready").status_code == 503, 30, "no worker ready")
    with grpc.insecure_channel(server.grpc_target) as channel:
        pb_grpc.GRPCInferenceServiceStub(channel).RepositoryModelLoad(
            pb.RepositoryModelLoadRequest(model_name="ad-ctr"), metadata=auth, timeout=30
        )
    wait_until(lambda: _loads(server, "load") == 4, 30, "ad-ctr loaded again by both workers")
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 30, "both workers ready again")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_drives_the_server(protocol: str, served: tuple[ServerProcess, Path], tmp_path: Path) -> None:
    binary = shutil.which("perf_analyzer")
    if binary is None:
        pytest.skip("perf_analyzer not installed (bash .ci/install-perf-analyzer.sh: PyPI's binary needs glibc 2.38)")
    server, repo = served  # over HTTP it reads GET /v2/models/{model}/config first, over gRPC the ModelConfig RPC
    x = _inputs(repo, raw_records(16, offset=8500))
    data = {"data": [{"dense": x["dense"][i].tolist(), "sparse": x["sparse"][i].tolist()} for i in range(16)]}
    (tmp_path / "input.json").write_text(json.dumps(data))
    url = server.grpc_target if protocol == "grpc" else server.url.removeprefix("http://")
    csv = tmp_path / "pa.csv"
    out = subprocess.run(
        [binary, "-m", "ad-ctr", "-i", protocol, "-u", url, "-b", "1", "--concurrency-range", "2",
         "--input-data", str(tmp_path / "input.json"), "--measurement-mode", "count_windows",
         "--measurement-request-count", "200", "--stability-percentage", "999", "--max-trials", "3", "-f", str(csv)],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    header, row = csv.read_text().splitlines()[:2]
    stats = dict(zip(header.split(","), row.split(","), strict=True))
    assert float(stats["Inferences/Second"]) > 0 and int(stats["p99 latency"]) > 0


def _batches(server: ServerProcess) -> tuple[float, float]:
    text = server.get("/metrics").text
    count = re.search(r'inference_batch_rows_count\{model="ad-ctr",version="1"\} (\S+)', text)
    total = re.search(r'inference_batch_rows_sum\{model="ad-ctr",version="1"\} (\S+)', text)
    return (float(count.group(1)) if count else 0.0, float(total.group(1)) if total else 0.0)


def test_http_and_grpc_share_one_batch_and_grpc_drains_on_sigterm(ctr_repo: Path, start_server: ServerFactory) -> None:
    # a 1 s window: both requests wait in the same queue, and the SIGTERM below lands while one is queued;
    # a 500 ms queue budget: once the queued item is older than that, new work is refused (overload)
    server = start_server(
        ctr_repo, APP_MAX_QUEUE_DELAY_US="1000000", APP_QUEUE_BUDGET_MS="500", APP_DRAIN_TIMEOUT_S="10", APP_WORKERS="1"
    )  # one process: both requests must reach the same batcher
    wait_until(lambda: server.get("/v2/health/ready").status_code == 200, 60, "readiness")
    before = _batches(server)
    rows = raw_records(2, offset=8600)
    msg = tasks_pb2.ScoreAdsRequest(candidates=[tasks_pb2.AdCandidate(ad_id="g", features=_features(rows[0]))])
    channel = grpc.insecure_channel(server.grpc_target)
    stub = tasks_pb2_grpc.TaskServiceStub(channel)
    with cf.ThreadPoolExecutor(2) as pool:
        via_grpc = pool.submit(stub.ScoreAds, msg, timeout=10)
        via_http = pool.submit(server.post, "/v1/ads/ctr", json={"candidates": [{"ad_id": "h", "features": rows[1]}]})
        assert via_grpc.result().scores[0].ad_id == "g", via_grpc.result()
    expect_status(via_http.result(), 200)
    count, total = _batches(server)
    assert (count - before[0], total - before[1]) == (1.0, 2.0), "one batch of 2 rows: one HTTP + one gRPC item"

    def queued() -> bool:
        return 'inference_queue_rows{model="ad-ctr",version="1"} 1.0' in server.get("/metrics").text

    first = stub.ScoreAds.future(msg, timeout=10)
    wait_until(queued, 5, "the first request to be queued")
    refusals: list[grpc.RpcError] = []

    def refused() -> bool:  # requests admitted before the budget ran out join the batch; later ones are refused
        try:
            stub.ScoreAds.future(msg, timeout=10).result(timeout=0.05)
        except grpc.FutureTimeoutError:
            return False
        except grpc.RpcError as e:
            refusals.append(e)
            return True
        return False

    wait_until(refused, 5, "an overload refusal")
    assert first.result().scores[0].ad_id == "g"
    overload = refusals[0]
    assert overload.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, overload.details()
    trailers = dict(overload.trailing_metadata())
    assert trailers["shopinfer-error-code"] == "overloaded" and int(trailers["retry-after-ms"]) >= 500

    with cf.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(stub.ScoreAds, msg, timeout=15)
        wait_until(queued, 5, "the gRPC request to be queued")
        server.proc.send_signal(signal.SIGTERM)
        assert in_flight.result().scores[0].ad_id == "g"  # drained, not cut off
    server.proc.wait(20)  # uvicorn re-raises SIGTERM after its graceful shutdown: the exit status is -15
    with pytest.raises(grpc.RpcError) as err:
        stub.ScoreAds(msg, timeout=2)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    channel.close()
    log = server.log.read_text()
    assert log.index("gRPC draining") < log.index("gRPC stopped") < log.index("all versions drained")
    assert "Application shutdown complete" in log
    with pytest.raises(httpx.ConnectError):
        server.get("/v2/health/live")
