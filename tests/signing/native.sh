# The signing checks (shared.sh) on the native server: [[policy]] and
# [[replicate]] tables in its configuration file, the CI key given as the
# path of cosign.pub; then configurations it must refuse to start with.
# Sourced by tests/signing/run.sh.
cat >"$scratch/signing.toml" <<TOML
[[policy]]
namespace = "prod/**"
require_signature = ["$KEYS/ci.pub"]

[[policy]]
namespace = "prod/open/**"

$(toml_tables replicate "$(rules_json)")
TOML
start_pier main -c "$scratch/signing.toml" || exit 2
MAIN=$main_addr
echo "native: main=$MAIN"
run_signing_checks native

# refused_at_start NAME TOML TEXT: `pier serve` with that configuration exits
# at once, saying TEXT.
refused_at_start() {
  local status=0
  printf '%s\n' "$2" >"bad-$1.toml"
  timeout 20 "$PIER_BIN" serve --listen "127.0.0.1:$(free_port)" --data-dir "bad-$1-data" \
    -c "bad-$1.toml" 2>"bad-$1.log" || status=$?
  cat "bad-$1.log"
  # (124: still serving when the timeout stopped it)
  [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && grep -qF -- "$3" "bad-$1.log"
}
bad_configurations_are_refused_at_start() {
  local corrupt
  corrupt=$(sed '2s/^..../AAAA/' "$KEYS/ci.pub")
  refused_at_start pem "[[policy]]
namespace = \"prod/**\"
require_signature = ['''$corrupt''']" 'namespace policy "prod/**": require_signature[0]'
  refused_at_start private "[[policy]]
namespace = \"prod/**\"
require_signature = [\"$KEYS/ci.key\"]" 'never the private key'
  refused_at_start missing "[[policy]]
namespace = \"prod/**\"
require_signature = [\"$KEYS/nothing.pub\"]" 'cannot read the key file'
  refused_at_start glob "[[policy]]
namespace = \"Prod/**\"
require_signature = [\"$KEYS/ci.pub\"]" 'namespace policy "Prod/**"'
  refused_at_start key "[[policy]]
namespace = \"prod/**\"
require_signatures = []" 'unknown field'
}
check "native: a bad key, key file or namespace glob is refused at start" bad_configurations_are_refused_at_start
