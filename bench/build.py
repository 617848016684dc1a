"""Build time of a 10-step Dockerfile on dockyardd beside the reference engine (Debian's dockerd
20.10, legacy builder), cold (`--no-cache`) and cached, as ratios.

    sudo .venv/bin/python bench/build.py [--rounds 3]

Both engines get the same busybox base image from a Dockyard registry the script starts, and
both are driven by the same stock `docker` CLI; each figure is the median wall time of `docker
build` over the rounds. Everything runs on loopback; every process is stopped by PID at the end.
Needs root, runc, `dockerd` (`apt-get install docker.io`) and skopeo.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.engine import engine_world, reference_engine  # noqa: E402

DOCKERFILE = """\
FROM bench-base:1
RUN echo one > /one.txt
RUN mkdir -p /srv/data && seq 1 2000 > /srv/data/numbers
COPY app/ /srv/app/
ENV MODE=bench
WORKDIR /srv/app
RUN cat main.txt > copy.txt
COPY extra.txt /srv/extra.txt
RUN rm /one.txt
CMD ["cat", "/srv/app/copy.txt"]
"""


def timed(run, *args: str) -> float:
    started = time.perf_counter()
    result = run(*args)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"build failed: {result.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "build.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-build-") as temp:
        workdir = Path(temp)
        context = workdir / "context"
        (context / "app").mkdir(parents=True)
        (context / "Dockerfile").write_text(DOCKERFILE)
        (context / "app" / "main.txt").write_text("main\n" * 1000)
        (context / "extra.txt").write_text("extra\n")
        with engine_world(workdir, "bench-base:1") as (dockyard, _, reference), reference_engine(workdir) as dockerd:
            dockerd.docker("pull", reference, check=True)
            dockerd.docker("tag", reference, "bench-base:1", check=True)
            engines = {"dockyardd": dockyard.docker, "dockerd": dockerd.docker}
            figures: dict[str, dict[str, list[float]]] = {name: {"cold": [], "cached": []} for name in engines}
            for round_number in range(args.rounds):
                order = list(engines) if round_number % 2 == 0 else list(engines)[::-1]
                for name in order:
                    run = engines[name]
                    figures[name]["cold"].append(timed(run, "build", "--no-cache", "-q", "-t", "bench:1", str(context)))
                    figures[name]["cached"].append(timed(run, "build", "-q", "-t", "bench:1", str(context)))
                print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
    medians = {name: {kind: statistics.median(values) for kind, values in kinds.items()} for name, kinds in figures.items()}
    print("| build of a 10-step Dockerfile | dockyardd (s) | dockerd 20.10 (s) | ratio (lower is better) |")
    print("| --- | ---: | ---: | ---: |")
    for kind in ("cold", "cached"):
        ours, theirs = medians["dockyardd"][kind], medians["dockerd"][kind]
        print(f"| {kind} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.2f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"rounds": args.rounds, "samples": figures, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
