#!/usr/bin/env bash
# Run a task with --json and pick fields out of the result with Python's json module.
# Usage (from the repository root):  bash examples/json-pipeline.sh ["TASK"]
set -euo pipefail
PYTHON="${PYTHON:-python3}"
task="${1:-Write a shell one-liner that counts lines in all .py files}"

result="$("$PYTHON" main.py --json --quiet --max-rounds 2 "$task")"

"$PYTHON" - "$result" <<'PY'
import json, sys
run = json.loads(sys.argv[1])
print(f"mode: {run['mode']}")
if run.get("ask"):
    print(f"the task asks for: {run['ask']['kind']} (decided by the {run['ask']['by']})")
if run["stop_reason"]:
    print(f"plan review: {run['stop_reason']} after {run['rounds']} round(s)")
if run["answer_stop_reason"]:
    print(f"answer review: {run['answer_stop_reason']}, {len(run['answers'])} version(s)")
for answer in run["answers"]:
    evidence = answer["evidence"]
    checks = evidence["checks"] if evidence else []
    failed = sum(1 for check in checks if check["passed"] is False)
    print(f"answer v{answer['version']}: {len(checks)} check(s), {failed} failed")
for phase in run["metrics"]["phases"]:
    print(f"{phase['role']:>8} {phase['phase']:<8} {phase['output_tokens']:>4} tokens"
          f"  {phase['tokens_per_s']:6.1f} tok/s  wall {phase['wall_s']:.2f} s")
print(f"loads: {run['metrics']['loads']}, total {run['metrics']['wall_s']:.1f} s")
if run["unmet"]:
    print(f"unmet: {'; '.join(run['unmet'])}")
print(f"seed: {run['seed']} (--seed {run['seed']} reproduces this run)")
print(f"--- answer (v{run['chosen_answer']}) ---")
print(run["output"])
PY
