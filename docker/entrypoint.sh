#!/bin/sh
# Entry point of the flow image: optionally pull the default models once, then run the command.
#
# PULL_ON_START (compose passes it from .env): space- or comma-separated model references,
# e.g. "ollama:llama3.2 hf:stabilityai/sd-turbo". Empty (the default): nothing is pulled.
# Pulls run in the background so the gateway answers /health at once; a marker under /data
# records the list already pulled, so they run on the first start only (and again only when
# the list changes). A failed pull is reported in the logs and retried at the next start.
set -eu

pull_list=$(printf '%s' "${PULL_ON_START:-}" | tr ',' ' ' | xargs)
# PULL_MARKER: where that record lives (tests point it elsewhere; compose leaves it alone).
marker=${PULL_MARKER:-/data/models/.pulled-on-start}

if [ -n "$pull_list" ] && [ "$(cat "$marker" 2>/dev/null || true)" != "$pull_list" ]; then
    (
        failed=0
        for ref in $pull_list; do
            echo "entrypoint: pulling $ref"
            flow pull "$ref" || { echo "entrypoint: pull of $ref failed" >&2; failed=1; }
        done
        if [ "$failed" -eq 0 ]; then printf '%s' "$pull_list" > "$marker"; fi
    ) &
fi

exec "$@"
