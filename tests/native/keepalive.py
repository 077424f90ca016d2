"""One HTTPS keep-alive connection the TLS suite (tests/native/tls.sh) holds
open across a certificate swap: it asks GET PATH once, then again each time
a line arrives on stdin, always on the same connection, and prints for each
answer the status, the connection's local port (the same port: the same
connection) and the SHA-256 fingerprint of the certificate the server
presented when that connection was made.

Usage: python3 keepalive.py HOST PORT CA_FILE PATH
"""

import hashlib
import http.client
import ssl
import sys


def main():
    host, port, ca_file, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    context = ssl.create_default_context(cafile=ca_file)
    connection = http.client.HTTPSConnection(host, port, context=context, timeout=30)
    while True:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        if response.getheader("connection", "").lower() == "close":
            sys.exit("the server closed the connection")
        certificate = connection.sock.getpeercert(binary_form=True)
        local_port = connection.sock.getsockname()[1]
        fingerprint = hashlib.sha256(certificate).hexdigest()
        print(f"status={response.status} port={local_port} fingerprint={fingerprint}", flush=True)
        if not sys.stdin.readline():
            return


main()
