#!/bin/bash
# A/B of uvicorn's HTTP stack under one BentoML server: httptools + uvloop (what the venv
# installs) against h11 + asyncio (the same packages hidden from Python). The tuned
# configuration of a finished study, served from source on the server's core (cpu 0), gets an
# open-loop Poisson overload (default 50 req/s, 30 s, 5 s warm-up) from the generator's core
# (cpu 1); its ok departure rate is the served saturation. Alternates the two, 3 runs each;
# docs/service.md quotes its output.
#
#   bash tests/http_stack_ab.sh [RESULTS_DIR] [RATE]      # defaults: results 50
# Needs a finished `make all` (its BentoML home, payloads and tuning/t00/variant.json).
set -u
RESULTS=$(realpath "${1:-results}")
RATE=${2:-50}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$RESULTS/benchmarks/http_stack_ab
HIDE=$(mktemp -d)  # a module that fails to import hides the installed one
printf 'raise ImportError("hidden by http_stack_ab.sh")\n' > "$HIDE/httptools.py"
cp "$HIDE/httptools.py" "$HIDE/uvloop.py"
rm -rf "$OUT"; mkdir -p "$OUT"
cd "$REPO/services/sentiment"
i=0
for stack in c pure c pure c pure; do
  i=$((i+1))
  path=""; [ "$stack" = pure ] && path=$HIDE
  PYTHONPATH=$path BENTOML_HOME=$RESULTS/bentoml_home BENTOML_DO_NOT_TRACK=true \
    SERVEBENCH_VARIANT_SPEC=$RESULTS/tuning/t00/variant.json \
    setsid taskset -c 0 "$REPO/.venv/bin/bentoml" serve service:SentimentService \
    --host 127.0.0.1 --port 3997 > "$OUT/server$i.log" 2>&1 &
  server=$!
  for _ in $(seq 1 240); do curl -sf http://127.0.0.1:3997/readyz >/dev/null && break; sleep 0.5; done
  worker=$(pgrep -P $server -f "_bentoml_impl.worker" | head -1)
  "$REPO/.venv/bin/servebench" loadtest --host http://127.0.0.1:3997 \
    --payloads "$RESULTS/data/payloads.csv" --rate "$RATE" --duration 30 --warmup 5 --seed 7 \
    --cpus 1 --no-progress --out "$OUT/run$i" > "$OUT/loadtest$i.log" 2>&1
  loaded=$(grep -c "httptools\|uvloop" /proc/$worker/maps)
  python3 -c "import json; s=json.load(open('$OUT/run$i/summary.json')); print('$stack', round(s['throughput_rps'], 2), 'valid' if s['valid'] else 'invalid', 'C modules mapped: $loaded')" | tee -a "$OUT/results.txt"
  kill -- -$server; sleep 2; kill -- -$worker 2>/dev/null; sleep 2
done
rm -rf "$HIDE"
