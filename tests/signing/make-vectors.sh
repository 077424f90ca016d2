#!/usr/bin/env bash
# Writes the fixed vectors of core's signature unit tests
# (core/src/signing/testdata/) with the real cosign: an image pushed to a
# pier, signed in tag mode by an ECDSA P-256 key (`cosign generate-key-pair`)
# and by an Ed25519 key (`cosign import-key-pair` of an openssl key), the
# signature manifest's layers and payload read back with crane. A third key
# signs nothing. Run it again only to change the vectors; the tests read the
# committed files, so they need neither cosign nor a network.
#
# Usage: tests/signing/make-vectors.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
out=core/src/signing/testdata

HARNESS_NAME=signing-vectors
# shellcheck source=tests/lib/harness.sh
source tests/lib/harness.sh
# shellcheck source=tests/lib/images.sh
source tests/lib/images.sh
need_tools cosign crane jq openssl
need_pier
start_pier vectors
cd "$scratch/work"
export COSIGN_PASSWORD=
cosign generate-key-pair --output-key-prefix ecdsa >/dev/null 2>&1
cosign generate-key-pair --output-key-prefix other >/dev/null 2>&1
openssl genpkey -algorithm ed25519 -out ed25519.pem
cosign import-key-pair --key ed25519.pem --output-key-prefix ed25519 >/dev/null 2>&1

make_image "$vectors_addr/vectors/app:v1" 1000
digest=$(crane digest --insecure "$vectors_addr/vectors/app:v1")
for key in ecdsa ed25519; do
  cosign sign --key "$key.key" --tlog-upload=false --allow-insecure-registry --allow-http-registry -y \
    "$vectors_addr/vectors/app@$digest" >/dev/null 2>&1
done
signatures=$(crane manifest --insecure "$vectors_addr/vectors/app:${digest/:/-}.sig")
# One payload (the same claims), one layer per signature, in signing order.
payload=$(jq -r '.layers[0].digest' <<<"$signatures")
cd - >/dev/null
mkdir -p "$out"
crane blob --insecure "$vectors_addr/vectors/app@$payload" >"$out/payload.json"
crane manifest --insecure "$vectors_addr/vectors/app@$digest" >"$out/image.json"
jq -r '.layers[0].annotations["dev.cosignproject.cosign/signature"]' <<<"$signatures" >"$out/ecdsa.sig"
jq -r '.layers[1].annotations["dev.cosignproject.cosign/signature"]' <<<"$signatures" >"$out/ed25519.sig"
printf '%s\n' "$signatures" >"$out/signatures.json"
echo "$digest" >"$out/digest.txt"
for key in ecdsa ed25519 other; do cp "$scratch/work/$key.pub" "$out/$key.pub"; done
echo "vectors written to $out (image $digest, $(cosign version 2>/dev/null | awk '/GitVersion/ {print $2}'))"
