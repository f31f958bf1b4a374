#!/bin/sh
# Test PKI in the current directory: ca.pem/ca.key, server.pem/server.key
# (IP 127.0.0.1, DNS lb.test, serverAuth), client.pem/client.key (clientAuth).
# Short-lived (2 days), EC P-256. Used by the TLS tests only.
set -e
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key; key server.key; key client.key
openssl req -x509 -new -key ca.key -subj /CN=lb-test-ca -days 2 -out ca.pem \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
leaf() {
    openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr"
    printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -days 2 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
}
leaf server "IP:127.0.0.1,DNS:lb.test" serverAuth
leaf client "DNS:operator" clientAuth
