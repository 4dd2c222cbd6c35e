#!/usr/bin/env bash
# Decision-log benchmark: record RECORDS decisions (default 1M) for USERS users (default 1000)
# twice — plain, then through the hash chain with signed checkpoints — seal the plain log as the
# first start after an upgrade does, verify the chained log, time queries by user and a 7-day
# range, and prune the older half of the chained log. Not a test: prints figures.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release --example audit_bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
./target/release/examples/audit_bench "$work" "${RECORDS:-1000000}" "${USERS:-1000}" "${QUERIES:-500}"
