"""Benchmark: what the CRD schema layer costs the embedded API server per write of a Sandbox.

    python bench/apiserver_schema.py [--writes 2000]

Runs ``ResourceSchema.prepare`` (pruning, OpenAPI checks, list types, CEL rules) for a Sandbox create, a
status update (what the operator sends most) and a spec update (CEL transition rules), and prints the time
per write beside a baseline measured in the same run: ``jsonschema``'s Draft 4 validator checking the same
object against the same CRD schema (types and ranges only: no pruning, no CEL), with the ratio. Goal: the
full Kubernetes treatment costs at most a few times a plain JSON-schema check (well under a millisecond).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jsonschema

from leap0_dev.apiserver.schema import ResourceSchema
from leap0_dev.crds import load_crds


def _per_write(n: int, write: Callable[[], Any]) -> float:
    write()
    start = time.perf_counter()
    for _ in range(n):
        write()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writes", type=int, default=2000)
    n = parser.parse_args().writes

    crd = next(c for c in load_crds() if c["spec"]["names"]["kind"] == "Sandbox")
    start = time.perf_counter()
    schema = ResourceSchema(crd, "v1alpha1")
    compile_ms = (time.perf_counter() - start) * 1e3
    validator = jsonschema.Draft4Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])

    created: dict[str, Any] = {
        "apiVersion": "leap0.dev/v1alpha1",
        "kind": "Sandbox",
        "metadata": {"name": "bench", "namespace": "bench"},
        "spec": {
            "image": "python:3.12-slim",
            "vcpu": 2,
            "memory": 2048,
            "timeout": 300,
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
        },
    }
    with_status = copy.deepcopy(created)
    with_status["status"] = {
        "phase": "Running",
        "vcpu": 2,
        "memory": 2048,
        "expiresAt": "2026-01-01T00:05:00Z",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Running",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    longer = copy.deepcopy(created)
    longer["spec"]["timeout"] = 600

    cases = [
        ("create", lambda: schema.prepare(created, None), lambda: validator.is_valid(created)),
        (
            "status update",
            lambda: schema.prepare(with_status, created),
            lambda: validator.is_valid(with_status),
        ),
        (
            "spec update (timeout)",
            lambda: schema.prepare(longer, created),
            lambda: validator.is_valid(longer),
        ),
    ]
    print(f"Sandbox CRD schema and its CEL rules compiled in {compile_ms:.1f} ms")
    print(f"{'write':<24}{'prepare us':>12}{'jsonschema us':>16}{'ratio':>8}")
    for name, ours, baseline in cases:
        ours_us = _per_write(n, ours)
        base_us = _per_write(n, baseline)
        print(f"{name:<24}{ours_us:>12.0f}{base_us:>16.0f}{ours_us / base_us:>8.1f}")


if __name__ == "__main__":
    main()
