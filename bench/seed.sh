# The directory the admission benchmarks run against, sourced by them: 10k users and 1k groups of
# 20 members, and alice in ml-team-a nested in ml-engineers (the bench policy's submitters).
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
