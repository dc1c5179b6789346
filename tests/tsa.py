"""A real RFC 3161 time-stamp authority for tests: OpenSSL's `openssl ts -reply` behind a small
HTTP handler (http.server in a thread), with a CA and a TSA certificate made here.

The TSA certificate has a critical extendedKeyUsage of id-kp-timeStamping only (RFC 3161
section 2.3). The TSA configuration sets no `certs =`: with it, OpenSSL writes the token's
certificate SET unsorted, which DER forbids and strict parsers (rfc3161-client's) reject. So
the token carries only the TSA certificate (certReq) and the CA comes from the verifier's
`--tsa-roots`, as it should anyway.
"""

from __future__ import annotations

import datetime
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TsaFiles:
    ca_pem: Path  # the root to trust (--tsa-roots)
    tsa_pem: Path
    tsa_key: Path
    config: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_tsa_files(folder: Path, name: str = "Test TSA") -> TsaFiles:
    """A CA, a TSA certificate it issued and an `openssl ts` configuration, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{name} Root CA"))
        .issuer_name(_name(f"{name} Root CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.subject)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TsaFiles(folder / "ca.pem", folder / "tsa.pem", folder / "tsa.key", folder / "tsa.cnf")
    files.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.tsa_pem.write_bytes(tsa.public_bytes(serialization.Encoding.PEM))
    files.tsa_key.write_bytes(
        tsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (folder / "serial").write_text("01\n")
    files.config.write_text(
        f"""[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {folder}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.4146.2.3
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_alg = sha256
"""
    )
    return files


class OpensslTsa:
    """`openssl ts -reply` over HTTP POST (RFC 3161 section 3.4: application/timestamp-query in,
    application/timestamp-reply out). `down` makes it answer 503; `garbage` a body that is no
    TimeStampResp. `requests` counts the queries answered with a token."""

    def __init__(self, files: TsaFiles) -> None:
        self.files = files
        self.down = False
        self.garbage = False
        self.requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, body = owner._answer(query)
                self.send_response(status)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/tsa"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _answer(self, query: bytes) -> tuple[int, bytes]:
        if self.down:
            return 503, b"down for maintenance\n"
        if self.garbage:
            return 200, b"\x30\x03\x02\x01\x00"
        with self._lock, tempfile.TemporaryDirectory() as tmp:
            request, response = Path(tmp) / "q.tsq", Path(tmp) / "r.tsr"
            request.write_bytes(query)
            done = subprocess.run(
                ["openssl", "ts", "-reply", "-config", str(self.files.config),
                 "-queryfile", str(request), "-out", str(response)],
                capture_output=True,
                timeout=30,
            )  # fmt: skip
            if done.returncode != 0:
                return 400, done.stderr
            self.requests += 1
            return 200, response.read_bytes()

    def start(self) -> OpensslTsa:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
