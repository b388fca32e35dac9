"""Peak memory of the liver + lesion pipeline, per stage, on one CT.

    nice -n 5 python benchmarks/liver_memory.py [CT] [--model pyliverlesionseg-liver-lesion-ct]

Runs ``deepseg.segment`` once (CPU) while a thread samples the process RSS every 10 ms, and prints the
peak RSS reached in each progress stage (load, preprocess, infer, lesions, postprocess, write) and over
the whole run (``ru_maxrss``, which also catches peaks between samples).  The model must be fetched
(``deepseg models fetch pyliverlesionseg-liver-lesion-ct``).
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from pathlib import Path

import psutil

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalseg" / "example_ct_sm.nii.gz"


def profile(model: str, ct: Path) -> dict:
    from deepseg import segment

    proc = psutil.Process()
    stage = {"name": "start"}
    peaks: dict[str, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss = proc.memory_info().rss / 2**20
            peaks[stage["name"]] = max(peaks.get(stage["name"], 0.0), rss)
            time.sleep(0.01)

    def on_progress(name: str, done: int, total: int) -> None:
        stage["name"] = name

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        result = segment(model, [str(ct)], output=Path(out) / "o.seg.nrrd", device="cpu", progress_callback=on_progress)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    counts = {lab.name: int((result.labels.array == lab.value).sum()) for lab in result.label_info}
    return {"ct": str(ct), "voxels": int(result.labels.array.size), "seconds": round(seconds, 1),
            "peak_rss_mib_by_stage": {k: round(v) for k, v in peaks.items()},
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "voxel_counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct", nargs="?", type=Path, default=SHARED_CT)
    parser.add_argument("--model", default="pyliverlesionseg-liver-lesion-ct")
    args = parser.parse_args()
    print(json.dumps(profile(args.model, args.ct), indent=2))


if __name__ == "__main__":
    main()
