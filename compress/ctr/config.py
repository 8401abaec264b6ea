"""``task = "ctr"``: a tabular click log described by ``[data]`` (the shared :class:`CompressConfig` as is)."""

from __future__ import annotations

from compress.config import CompressConfig
from compress.ctr.synthetic import synthetic_data
from compress.tasks import TaskSpec

SPEC = TaskSpec(id="ctr", config=CompressConfig, adapter="compress.ctr.task:CtrTask", synthetic_data=synthetic_data)
