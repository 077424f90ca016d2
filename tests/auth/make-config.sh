#!/usr/bin/env bash
# Makes a complete auth setup for the suite in OUTDIR with `pier auth`:
#   pier.toml          the native config: policy.toml plus accounts and keys file
#   auth.json          the same [auth] table as JSON (the edge Worker's PIER_AUTH var)
#   signing-keys.json  the token signing key (the edge's PIER_AUTH_SIGNING_KEYS secret)
#   credentials.json   each role's name and secret, for the suite (PIER_AUTH_CREDENTIALS),
#                      and the private key of a test OIDC issuer pier trusts
# Roles: sandbox (user alice), admin (user root), ci (robot ci-bot, group ci),
# promoter (robot promoter), production (robot prod-puller, group production).
# OIDC: ID tokens of https://ci.pier.test for repository acme/release on
# refs/heads/main log in as the promoter; other acme/* repositories as CI.
#
# Usage: tests/auth/make-config.sh OUTDIR     (env PIER_BIN: the pier binary [default: pier on the PATH])
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: $0 OUTDIR}
pier=${PIER_BIN:-pier}
mkdir -p "$out"
out=$(cd "$out" && pwd)

secret() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
alice_password=$(secret)
root_password=$(secret)

"$pier" auth new-signing-key >"$out/signing-keys.json"

{
  printf 'auth_signing_keys_file = "%s"\n\n' "$out/signing-keys.json"
  cat "$here/policy.toml"
  for user in "alice:$alice_password:dev" "root:$root_password:admins"; do
    IFS=: read -r name password group <<<"$user"
    printf '\n[[auth.users]]\nname = "%s"\npassword_hash = "%s"\ngroups = ["%s"]\n' \
      "$name" "$(printf %s "$password" | "$pier" auth hash-password)" "$group"
  done
} >"$out/pier.toml"

declare -A robot_tokens
for robot in "ci-bot:ci" "promoter:" "prod-puller:production"; do
  IFS=: read -r name group <<<"$robot"
  printed=$("$pier" auth new-robot "$name" ${group:+--group "$group"})
  robot_tokens[$name]=$(sed -n 's/^token: //p' <<<"$printed")
  printf '\n%s\n' "$(sed -n '/^\[\[auth.robots\]\]/,$p' <<<"$printed")" >>"$out/pier.toml"
done

# A test OIDC issuer: its key pair (the private half stays with the suite).
node -e '
  const { generateKeyPairSync } = require("node:crypto");
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  console.log(JSON.stringify({ ...privateKey.export({ format: "jwk" }), kid: "ci-pier-test-1", alg: "ES256" }));
' >"$out/oidc-private-jwk.json"
oidc_jwks=$(jq -c '{keys: [del(.d)]}' "$out/oidc-private-jwk.json")
cat >>"$out/pier.toml" <<TOML

[[auth.oidc]]
issuer = "https://ci.pier.test"
audience = "pier"
jwks = '$oidc_jwks'

[[auth.oidc.identities]]
claims = { repository = "acme/release", ref = "refs/heads/main" }
name = "promoter"

[[auth.oidc.identities]]
claims = { repository = "acme/*" }
name = "ci/{repository}"
groups = ["ci"]
TOML

/usr/bin/python3 - "$out/pier.toml" "$out/auth.json" <<'PY'
import json, sys, tomllib
with open(sys.argv[1], "rb") as f:
    config = tomllib.load(f)
with open(sys.argv[2], "w") as f:
    json.dump(config["auth"], f)
PY

jq -n \
  --arg alice "$alice_password" --arg root "$root_password" \
  --arg ci "${robot_tokens[ci-bot]}" --arg promoter "${robot_tokens[promoter]}" \
  --arg production "${robot_tokens[prod-puller]}" \
  --slurpfile oidc "$out/oidc-private-jwk.json" \
  '{sandbox: {username: "alice", password: $alice},
    admin: {username: "root", password: $root},
    ci: {username: "ci-bot", password: $ci},
    promoter: {username: "promoter", password: $promoter},
    production: {username: "prod-puller", password: $production},
    oidc: {issuer: "https://ci.pier.test", audience: "pier", private_jwk: $oidc[0]}}' >"$out/credentials.json"
rm "$out/oidc-private-jwk.json"
chmod 600 "$out"/*.json "$out/pier.toml"
echo "auth setup in $out"
