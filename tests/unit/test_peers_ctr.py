"""The binary KServe v2 request and answer of the task-shaped Triton peer (``loadtest/peers_ctr.py``)."""

from __future__ import annotations

import json
import struct

import numpy as np

from loadtest.peers_ctr import binary_request, binary_scores


def test_binary_request_lays_out_fp64_and_bytes_after_the_header() -> None:
    dense = np.array([[1.5, np.nan], [3.0, -2.0]])
    cat = np.array([["ab", ""], ["é", "x"]], dtype=object)
    body, hlen = binary_request(dense, cat)
    header = json.loads(body[:hlen])
    sizes = [t["parameters"]["binary_data_size"] for t in header["inputs"]]
    assert [(t["name"], t["datatype"], t["shape"]) for t in header["inputs"]] == [
        ("dense_raw", "FP64", [2, 2]), ("cat_raw", "BYTES", [2, 2])
    ], header  # fmt: skip
    assert len(body) == hlen + sum(sizes), (len(body), hlen, sizes)
    got = np.frombuffer(body[hlen : hlen + sizes[0]], "<f8").reshape(2, 2)
    assert np.array_equal(got, dense, equal_nan=True), got
    rest, texts = body[hlen + sizes[0] :], []
    while rest:
        (n,) = struct.unpack("<I", rest[:4])
        texts.append(rest[4 : 4 + n].decode())
        rest = rest[4 + n :]
    assert texts == ["ab", "", "é", "x"], texts


def test_binary_scores_reads_the_output_after_its_header() -> None:
    scores = np.array([0.25, 0.5, 0.125], "<f4")
    header = json.dumps({"outputs": [{"name": "pctr", "parameters": {"binary_data_size": scores.nbytes}}]}).encode()
    assert binary_scores(header + scores.tobytes(), len(header)).tolist() == [0.25, 0.5, 0.125]
