# Certificates the TLS suites make for themselves with openssl (no test
# certificate is committed): certificate authorities, server certificates
# for the addresses pier listens on, and client certificates for mutual
# TLS. Sourced after tests/lib/harness.sh; files go to $scratch/certs.

certs="$scratch/certs"
mkdir -p "$certs"

# make_ca NAME: a CA, $certs/NAME.crt and $certs/NAME.key.
make_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/O=pier tests/CN=$1" -keyout "$certs/$1.key" -out "$certs/$1.crt" 2>"$certs/$1.log"
}

# make_cert CA NAME SUBJECT EXTENSIONS: a certificate signed by CA with
# SUBJECT (openssl's /O=acme/CN=x form) and EXTENSIONS (an openssl
# extension section's lines), $certs/NAME.crt and $certs/NAME.key.
make_cert() {
  local ca=$1 name=$2 subject=$3 extensions=$4
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$subject" \
    -keyout "$certs/$name.key" -out "$certs/$name.csr" 2>"$certs/$name.log"
  printf '%s\n' "$extensions" >"$certs/$name.ext"
  openssl x509 -req -in "$certs/$name.csr" -CA "$certs/$ca.crt" -CAkey "$certs/$ca.key" -CAcreateserial \
    -days 2 -extfile "$certs/$name.ext" -out "$certs/$name.crt" 2>>"$certs/$name.log"
}

# make_server_cert CA NAME HOST...: a server certificate for these IP
# addresses and DNS names.
make_server_cert() {
  local ca=$1 name=$2 host names=(); shift 2
  for host in "$@"; do
    if [[ $host =~ ^[0-9.]+$ ]]; then names+=("IP:$host"); else names+=("DNS:$host"); fi
  done
  make_cert "$ca" "$name" "/CN=$1" "subjectAltName=$(IFS=,; echo "${names[*]}")
extendedKeyUsage=serverAuth"
}

# make_client_cert CA NAME SUBJECT: a client certificate.
make_client_cert() {
  make_cert "$1" "$2" "$3" "extendedKeyUsage=clientAuth"
}

# fingerprint CERT_FILE: the SHA-256 of a certificate's DER bytes, lower-case hex.
fingerprint() { openssl x509 -in "$1" -outform der | sha256sum | cut -d' ' -f1; }

# served_fingerprint HOST:PORT: the fingerprint of the certificate a new
# connection to HOST:PORT is served.
served_fingerprint() {
  openssl s_client -connect "$1" </dev/null 2>/dev/null | openssl x509 -outform der | sha256sum | cut -d' ' -f1
}
