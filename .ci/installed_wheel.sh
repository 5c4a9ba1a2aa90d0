#!/usr/bin/env bash
# The package as a user gets it: build the sdist and wheel, check that the recipes and the vendored data are
# inside, install the wheel into a fresh virtual environment (the checkout's venv lends it the already-installed
# dependencies, not r1lab itself) and run r1lab from a directory outside the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
py=$root/.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$py" -m build --sdist --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel=$(ls "$work"/dist/r1lab-*.whl)
sdist=$(ls "$work"/dist/r1lab-*.tar.gz)
"$py" - "$wheel" "$sdist" <<'PY'
import sys, tarfile, zipfile
wheel = set(zipfile.ZipFile(sys.argv[1]).namelist())
sdist = {name.split("/", 1)[1] for name in tarfile.open(sys.argv[2]).getnames() if "/" in name}
needed = ["bundled/recipes/zero_smollm2.yaml", "bundled/recipes/r1_tiny.yaml", "bundled/data/SOURCES.md",
          "bundled/data/benchmarks/gsm8k.jsonl", "bundled/data/benchmarks/math500.jsonl",
          "bundled/data/benchmarks/aime24.jsonl", "bundled/data/train/gsm8k_train.jsonl",
          "bundled/data/tiny/sevens.jsonl", "rollout/csrc/decode_attention.cpp"]
missing = [f"wheel: r1lab/{n}" for n in needed if f"r1lab/{n}" not in wheel]
missing += [f"sdist: src/r1lab/{n}" for n in needed if f"src/r1lab/{n}" not in sdist]
if missing:
    sys.exit("package data missing: " + ", ".join(missing))
print(f"wheel: {len(wheel)} files, sdist: {len(sdist)} files; recipes, data and kernel source inside both")
PY

"$py" -m venv "$work/venv"
site=$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" >"$site/checkout_deps.pth"  # dependencies only
"$work/venv/bin/python" -m pip install -q --no-deps --no-index "$wheel" 2>&1 | grep -v "^WARNING: Location" || true
cd "$work"  # outside the checkout: nothing can come from the source tree
"$work/venv/bin/python" -c "import r1lab, sys; assert r1lab.__file__.startswith(sys.prefix), r1lab.__file__; print('r1lab from', r1lab.__file__)"
r1lab=$work/venv/bin/r1lab
"$r1lab" recipes >/dev/null
"$r1lab" eval -m tiny-llama -b gsm8k --limit 2 -k 1 --max-new-tokens 8 -o "$work/eval"
"$r1lab" zero -c zero_tiny --steps 1 -o "$work/zero" --set run.eval_every=0
test -f "$work/zero/metrics.jsonl"
echo "installed wheel: eval and zero ran from $work"
