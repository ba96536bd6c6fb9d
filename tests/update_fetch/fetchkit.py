"""fetchkit: a real HTTPS file server for the download tests: http.server + ssl on a free port, a certificate
from a CA made here with `cryptography`, Range requests answered (206 + Content-Range), and faults on
demand: drop the connection after N bytes of a response, sleep, answer too much or too little.

    ca = Ca.make(tmp_path / "ca")                   # ca.pem, and ca.issue("127.0.0.1") -> (cert, key)
    with FileServer(ca, {"/b.bundle": data}) as srv:
        srv.url("/b.bundle")                        # https://127.0.0.1:PORT/b.bundle
        srv.drop_after = [100_000]                  # the next response is cut after 100 kB (one entry per cut)
        srv.requests                                # [(path, Range header or None), ...]
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import re
import ssl
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Ca:
    """A test CA on disk: `pem` is its certificate file; `issue(host)` writes a leaf cert and key."""

    def __init__(self, directory: Path, key, cert):
        self.dir, self.key, self.cert = directory, key, cert
        self.pem = str(directory / "ca.pem")

    @classmethod
    def make(cls, directory, cn: str = "test update CA") -> "Ca":
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, key, cert)

    def issue(self, host: str = "127.0.0.1", name: str = "server") -> tuple[str, str]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        try:
            san = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            san = x509.DNSName(host)
        cert = (x509.CertificateBuilder().subject_name(_name(host)).issuer_name(self.cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([san, x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
        return str(cert_path), str(key_path)


_RANGE = re.compile(r"^bytes=(\d+)-$")


class FileServer:
    """Files served over HTTPS by path. Fault knobs (read by the handler at each request):
    `drop_after`: list of byte counts; each response pops one and closes the socket after that many body
    bytes. `ignore_range`: answer 200 with the whole file. `lie_length`: send this Content-Length.
    `delay_per_chunk_s`: sleep between 64 KiB chunks (a slow link)."""

    def __init__(self, ca: Ca, files: dict[str, bytes], host: str = "127.0.0.1", *, cert: tuple[str, str] | None = None):
        self.files = dict(files)
        self.drop_after: list[int] = []
        self.ignore_range = False
        self.lie_length: int | None = None
        self.delay_per_chunk_s = 0.0
        self.requests: list[tuple[str, str | None]] = []
        self.sent = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                m = _RANGE.match(rng or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(server.lie_length if server.lie_length is not None
                                                       else len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                cut = server.drop_after.pop(0) if server.drop_after else None
                sent = 0
                for i in range(0, len(body), 65536):
                    piece = body[i:i + 65536]
                    if cut is not None and sent + len(piece) > cut:
                        piece = piece[:cut - sent]
                        self.wfile.write(piece)
                        self.wfile.flush()
                        server.sent += len(piece)
                        self.close_connection = True
                        self.connection.shutdown(2)  # the link drops mid-file
                        return
                    self.wfile.write(piece)
                    sent += len(piece)
                    server.sent += len(piece)
                    if server.delay_per_chunk_s:
                        time.sleep(server.delay_per_chunk_s)

        cert_file, key_file = cert or ca.issue(host)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        self.httpd = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # a client that hangs up is the test
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.host, self.port = host, self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="test-https", daemon=True)

    def url(self, path: str) -> str:
        return f"https://{self.host}:{self.port}{path}"

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


def tiny_gateway_wheel(directory, version: str) -> str:
    """A pure wheel named community_gateway-VERSION that installs a `gateway.cli` module and nothing else:
    enough for apply_bundle's offline install (venv + pip --no-index + import check) to take it, in
    seconds, so the hand-over is tested with a real signed bundle. Not the real release (the update
    branch's tests install one built from this tree)."""
    import base64
    import hashlib
    import zipfile

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dist = f"community_gateway-{version}.dist-info"
    files = {
        "gateway/__init__.py": f'__version__ = "{version}"\n',
        "gateway/cli/__init__.py": "",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: community-gateway\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    path = directory / f"community_gateway-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return str(path)
