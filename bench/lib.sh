# What the admission benchmarks share, sourced by them (from the repository root).

# Start the release server on WORK/d with the bench policy and EXTRA flags, on ports of its own;
# sets pid, scim (the SCIM URL), adm (the admission base URL) and token (the dev SCIM token).
#   start_server WORK [EXTRA...]
start_server() {
  local work=$1
  shift
  ./target/release/scimgate serve --dev --data-dir "$work/d" --policy "${POLICY:-bench/admission-policy.yaml}" "$@" \
    --admission-addr 127.0.0.1:0 --scim-addr 127.0.0.1:0 --ops-addr 127.0.0.1:0 >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 600); do grep -q '^sgt_' "$work/out" 2>/dev/null && break; sleep 0.05; done
  scim=$(sed -n 's/^ *SCIM URL: *//p' "$work/out" | sed 's/127.0.0.1/localhost/')
  adm=$(sed -n 's/^ *admission: *\(https:[^ ]*\)\/validate.*/\1/p' "$work/out")
  token=$(grep '^sgt_' "$work/out" | tail -1)
}

# 10k users and 1k groups of 20 members, and alice in ml-team-a nested in ml-engineers (the bench
# policy's submitters).
#   seed_directory SCIM_URL TOKEN CA
seed_directory() {
  local scim=$1 token=$2 ca=$3
  ./target/release/examples/scim_load "$scim" "$token" "$ca" seed-users 0 10000 8
  ./target/release/examples/scim_load "$scim" "$token" "$ca" seed-groups 1000 20 10000 8
  local auth=(-H "Authorization: Bearer $token" -H 'content-type: application/scim+json' --cacert "$ca" -s)
  local alice team
  alice=$(curl "${auth[@]}" "$scim/Users" -d '{"userName":"alice@example.com"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
  team=$(curl "${auth[@]}" "$scim/Groups" -d "{\"displayName\":\"ml-team-a\",\"members\":[{\"value\":\"$alice\"}]}" | sed 's/.*"id":"\([^"]*\)".*/\1/')
  curl "${auth[@]}" "$scim/Groups" -d "{\"displayName\":\"ml-engineers\",\"members\":[{\"value\":\"$team\"}]}" >/dev/null
}

# Run the ignored test TEST of the suite (the emulator and its HTTP face) with its output in WORK;
# wait until it has written WORK/kubeconfig. Sets face (its pid).
#   start_emulator WORK TEST
start_emulator() {
  SCIMGATE_BENCH_OUT="$1" cargo test --quiet --test it -- --ignored --exact "$2" >"$1/face.log" 2>&1 &
  face=$!
  for _ in $(seq 600); do [[ -s $1/kubeconfig ]] && break; sleep 0.1; done
}
