#!/usr/bin/env bash
# Install the peer job queues into throwaway environments next to this script:
#   .venv/              Python peers (plus corral itself, editable, from the repository)
#   node/node_modules/  BullMQ for Node, pinned in node/package.json
# Both are git-ignored; delete them to start over. Needs python3.11+ and npm.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3}"

if [ ! -x "$here/.venv/bin/python" ]; then
  "$python" -m venv "$here/.venv"
fi
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet \
  bullmq arq saq rq 'celery[redis]' 'dramatiq[redis]' huey redis hiredis
"$here/.venv/bin/python" -m pip install --quiet -e "$repo"

(cd "$here/node" && npm install --no-package-lock --no-audit --no-fund --loglevel=error)

echo "peers installed:"
"$here/.venv/bin/python" -m pip list --format=freeze 2>/dev/null \
  | grep -iE '^(bullmq|arq|saq|rq|celery|dramatiq|huey|redis|hiredis|corral)==' || true
(cd "$here/node" && npm ls --depth=0 2>/dev/null | tail -n +2) || true
