# The systemd unit and the settings every install path gives pier (sourced
# by tests/packaging/run.sh). The sandbox runs no systemd, so the unit is
# checked by systemd's own parser rather than started: `systemd-analyze
# verify` must have nothing to say (it warns about unknown or misspelt
# settings but still exits 0), and systemd-sysusers must accept the user.
# Set by run.sh and the harness: $scratch, $static_bin, $context, NAME_addr.
# shellcheck shell=bash disable=SC2154

# Checks run in $scratch/work: paths of the clone are absolute.
repo=$PWD

unit_verifies() {
  mkdir -p "$scratch/systemd"
  # The unit as installed, its binary where this run built it.
  sed "s#^ExecStart=/usr/local/bin/pier #ExecStart=$static_bin #" "$repo/deploy/systemd/pier.service" \
    >"$scratch/systemd/pier.service"
  grep -q "^ExecStart=$static_bin serve" "$scratch/systemd/pier.service"
  local said
  said=$(systemd-analyze verify "$scratch/systemd/pier.service" 2>&1)
  echo "systemd-analyze verify: ${said:-(nothing)}"
  [ -z "$said" ]
  for setting in ProtectSystem=strict StateDirectory=pier ReadWritePaths=/var/lib/pier NoNewPrivileges=yes \
    PrivateTmp=yes ProtectHome=yes 'CapabilityBoundingSet=$' User=pier; do
    grep -q "^$setting" "$repo/deploy/systemd/pier.service" || { echo "no $setting"; return 1; }
  done
}
check "systemd-analyze verify finds nothing to say about pier.service" unit_verifies

sysusers_accepts() {
  local said
  said=$(systemd-sysusers --dry-run --root="$scratch/sysroot" "$repo/deploy/systemd/pier.sysusers" 2>&1)
  echo "$said"
  grep -q "Creating user 'pier'" <<<"$said"
  fails grep -qi 'ignoring\|garbage\|failed' <<<"$said"
}
check "systemd-sysusers creates the user pier.service runs as" sysusers_accepts

# The PIER_* variables pier reads: clap's [env: ...] in `pier serve --help`,
# and PIER_LOG (the log filter, read by the logger).
known_settings() {
  { "$PIER_BIN" serve --help | grep -o '\[env: PIER_[A-Z0-9_]*' | cut -d' ' -f2; echo PIER_LOG; } | sort -u
}
# Those of the TLS flags, which a pier built before them lacks.
tls_settings=(PIER_TLS_CERT PIER_TLS_KEY PIER_TLS_DIR PIER_TLS_CLIENT_CA)

settings_are_ones_pier_reads() {
  local given known unknown name skipped=()
  given=$({
    grep -ohE '^#?PIER_[A-Z0-9_]+=' "$repo/deploy/systemd/pier.env" | tr -d '#='
    grep -oE 'PIER_[A-Z0-9_]+=' "$repo/deploy/systemd/pier.service" "$repo/Containerfile" | cut -d: -f2 | tr -d '='
    grep -ohE 'name: PIER_[A-Z0-9_]+' "$repo"/deploy/helm/pier/templates/*.yaml | awk '{print $2}'
  } | sort -u)
  echo "given: $(tr '\n' ' ' <<<"$given")"
  [ "$(wc -l <<<"$given")" -gt 10 ]
  known=$(known_settings)
  unknown=$(comm -23 <(echo "$given") <(echo "$known"))
  if ! grep -qx PIER_TLS_DIR <<<"$known"; then
    for name in "${tls_settings[@]}"; do skipped+=("$name"); done
    unknown=$(grep -vxF -f <(printf '%s\n' "${skipped[@]}") <<<"$unknown" || true)
    echo "not checked (this pier has no TLS flags yet): ${skipped[*]}"
  fi
  [ -z "$unknown" ] || { echo "pier reads none of: $unknown"; return 1; }
}
check "every PIER_* setting of the unit, env file, image and chart is one pier reads" settings_are_ones_pier_reads
