"""Run every benchmark (``benchmarks/bench_*.py``) and collect their JSON results.

``make bench`` calls this. Each benchmark is a script that takes ``--out FILE.json`` and writes its
figures there; timings live here, never in the test suite.

    python benchmarks/run_all.py --out benchmarks/results
    python benchmarks/run_all.py --out benchmarks/results sample_data   # only bench_sample_data.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="benchmark names (bench_<name>.py); default all")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON")
    args = parser.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.names]
    if not scripts:
        print(f"no benchmarks matched {args.names} in {HERE}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    for script in scripts:
        out = args.out / f"{script.stem.removeprefix('bench_')}.json"
        print(f">> {script.name} -> {out}", flush=True)
        start = time.perf_counter()
        if subprocess.run([sys.executable, str(script), "--out", str(out)]).returncode != 0:
            failed.append(script.name)
        print(f"   {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
