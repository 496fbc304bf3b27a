"""py-consul over HTTPS against `muster agent -dev -https-port`: `consul.Consul(scheme="https",
verify=<CA file>)` as documented by py-consul, with certificates made by the `openssl` CLI, and
with a client certificate (`cert=`) when the agent sets `verify_incoming`."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import consul
import pytest
import requests

from conftest import running_agent

OPENSSL_TIMEOUT = 30


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=OPENSSL_TIMEOUT)


def make_pki(d: Path) -> Path:
    """ca.pem, server.pem/.key for 127.0.0.1 and client.pem/.key, signed by the CA."""
    pki = d / "pki"
    pki.mkdir()
    openssl(
        pki, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Muster py test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    for name, usage, san in [("server", "serverAuth", "IP:127.0.0.1"), ("client", "clientAuth", None)]:
        openssl(
            pki, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        )  # fmt: skip
        ext = f"basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={usage}\n"
        if san:
            ext += f"subjectAltName={san}\n"
        (pki / f"{name}.ext").write_text(ext)
        openssl(
            pki, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
        )  # fmt: skip
    return pki


def tls_hcl(pki: Path, verify_incoming: bool) -> str:
    return (
        "tls {\n  defaults {\n"
        f'    ca_file = "{pki / "ca.pem"}"\n'
        f'    cert_file = "{pki / "server.pem"}"\n'
        f'    key_file = "{pki / "server.key"}"\n'
        f"    verify_incoming = {'true' if verify_incoming else 'false'}\n"
        "  }\n}\n"
    )


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="muster-py-https-") as d:
        yield Path(d)


def test_kv_and_agent_over_https(workdir):
    pki = make_pki(workdir)
    with running_agent(workdir, https=True, extra_args=["-hcl", tls_hcl(pki, False)]) as agent:
        c = consul.Consul(host="127.0.0.1", port=agent.https_port, scheme="https", verify=str(pki / "ca.pem"))
        assert c.kv.put("py/tls", "secret") is True
        index, data = c.kv.get("py/tls")
        assert int(index) > 0
        assert data["Value"] == b"secret"
        me = c.agent.self()
        assert me["DebugConfig"]["HTTPSPort"] == agent.https_port
        assert c.status.leader() == agent.server_addr

        # The system's roots do not know this CA: requests refuses the agent's certificate.
        untrusting = consul.Consul(host="127.0.0.1", port=agent.https_port, scheme="https", verify=True)
        with pytest.raises(requests.exceptions.SSLError):
            untrusting.kv.get("py/tls")


def test_client_certificate_with_verify_incoming(workdir):
    pki = make_pki(workdir)
    with running_agent(workdir, https=True, extra_args=["-hcl", tls_hcl(pki, True)]) as agent:
        ca = str(pki / "ca.pem")
        cert = (str(pki / "client.pem"), str(pki / "client.key"))
        c = consul.Consul(host="127.0.0.1", port=agent.https_port, scheme="https", verify=ca, cert=cert)
        assert c.kv.put("py/mtls", "yes") is True
        assert c.kv.get("py/mtls")[1]["Value"] == b"yes"

        anonymous = consul.Consul(host="127.0.0.1", port=agent.https_port, scheme="https", verify=ca)
        with pytest.raises(requests.exceptions.RequestException):
            anonymous.kv.get("py/mtls")
