#!/usr/bin/env bash
# Run every test executable in a folder, sum their "# N passed, N failed, N skipped" lines,
# print the total as the last line, exit non-zero if anything failed (or a test crashed).
set -u
dir=${1:?usage: run-tests.sh BUILD/tests}
passed=0; failed=0; skipped=0
for t in "$dir"/test_*; do
  [ -x "$t" ] && [ -f "$t" ] || continue
  case "$t" in *.d|*.o) continue;; esac
  name=$(basename "$t")
  echo "== $name"
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v '^# ' | sed 's/^/  /'
  line=$(printf '%s\n' "$out" | grep -E '^# [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' | tail -n 1)
  if [ -z "$line" ]; then
    echo "  FAIL $name exited with status $rc before reporting (crash?)"
    failed=$((failed + 1)); continue
  fi
  read -r p f s <<<"$(sed -E 's/^# ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/' <<<"$line")"
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "  FAIL $name exited with status $rc"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
