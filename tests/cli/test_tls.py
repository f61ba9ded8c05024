"""LiteLLM behind TLS: certificates are verified (a private CA by SSL_CERT_FILE), and a refused
certificate is said as such. Not in the Windows run: it needs the openssl command."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

from tests.support.project import Project
from tests.support.stack import require
from tests.support.standin import NotLiteLLM


def _self_signed(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    require(openssl is not None, "no openssl command to make a test certificate")
    assert openssl is not None
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def test_https_verifies_certificates_and_takes_a_private_ca(project: Project, tmp_path: Path) -> None:
    """A LiteLLM behind TLS with a private CA: refused with a line that says so (not "is the stack
    running"), and trusted once SSL_CERT_FILE names the CA - the environment's proxies still off."""
    cert, key = _self_signed(tmp_path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotLiteLLM)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}"
    try:
        done = project.run("keys.list", "--url", url)
        assert done.returncode == 4, done.stderr
        assert "TLS certificate this machine does not trust" in done.stderr
        done = project.run("keys.list", "--url", url, env={"SSL_CERT_FILE": str(cert)})
        assert done.returncode == 7, done.stderr  # TLS passed; the answer is not LiteLLM's
        assert "not as LiteLLM does" in done.stderr
        done = project.run("keys.list", "--url", url, env={"SSL_CERT_FILE": str(tmp_path / "no")})
        assert done.returncode == 2 and "SSL_CERT_FILE" in done.stderr, done.stderr
    finally:
        server.shutdown()
