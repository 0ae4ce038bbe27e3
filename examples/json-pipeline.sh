#!/usr/bin/env bash
# Run a task with --json and pick fields out of the result with Python's json module.
# Usage (from the repository root):  bash examples/json-pipeline.sh ["TASK"]
set -euo pipefail
PYTHON="${PYTHON:-python3}"
task="${1:-Write a shell one-liner that counts lines in all .py files}"

result="$("$PYTHON" main.py --json --quiet --max-rounds 1 "$task")"

"$PYTHON" - "$result" <<'PY'
import json, sys
run = json.loads(sys.argv[1])
print(f"stop reason: {run['stop_reason']} after {run['rounds']} round(s)")
for phase in run["metrics"]["phases"]:
    print(f"{phase['role']:>8}  {phase['output_tokens']:>4} tokens  {phase['tokens_per_s']:6.1f} tok/s"
          f"  ttft {phase['ttft_s']:.2f} s  wall {phase['wall_s']:.2f} s")
print(f"loads: {run['metrics']['loads']}, total {run['metrics']['wall_s']:.1f} s")
print("--- answer ---")
print(run["output"])
PY
