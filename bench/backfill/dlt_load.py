"""Load the fake's call history with dlt (run in the bench venv): a generator
resource paging searchCallV2 like a data engineer would write it, into dlt's
Postgres destination with merge on call_id. Prints JSON {"rows", "seconds"}."""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt  # noqa: E402
import httpx  # noqa: E402


def main() -> None:
    base, key, dsn, since, until, limit = sys.argv[1:7]

    @dlt.resource(name="calls", primary_key="call_id", write_disposition="merge")
    def calls():  # type: ignore[no-untyped-def]
        with httpx.Client(base_url=base, headers={"Authorization": key}, timeout=60) as client:
            page, seen = 1, 0
            while True:
                body = {"starttime": since, "endtime": until, "page": page, "limit": int(limit)}
                doc = client.post("/api/v1.0/base/searchCallV2", json=body).raise_for_status().json()
                data = doc["data"]
                if not data:
                    break
                yield data
                seen += len(data)
                if seen >= doc["totalRecord"]:
                    break
                page += 1

    pipeline = dlt.pipeline(pipeline_name="bench_backfill", destination=dlt.destinations.postgres(dsn),
                            dataset_name="dlt_bench", pipelines_dir=os.environ.get("BENCH_DLT_DIR"))
    started = time.monotonic()
    info = pipeline.run(calls())
    seconds = time.monotonic() - started
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("calls", 0)
    assert not info.has_failed_jobs
    print(json.dumps({"rows": rows, "seconds": seconds}))


if __name__ == "__main__":
    main()
