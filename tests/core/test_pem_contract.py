"""One PEM contract: a key or certificate pasted with `\\n` escapes where its lines break (as
JSON and environment variables carry it) is refused by every command that reads it, never
repaired, and the message says how to write it instead. No line of the key is ever shown."""

from __future__ import annotations

import base64
from pathlib import Path

from kit.build import REPO_ROOT, TEST_KEY_FILE, connection, make_repo, pipeline
from kit.keys import certificate_pem, ec_key, key_pem, rsa_key, ssh_key_pair
from kit.run import connc

ESCAPED = "holds `\\n` where its lines should break"


def escaped(pem: str | bytes) -> str:
    text = pem.decode() if isinstance(pem, bytes) else pem
    return text.replace("\n", "\\n")


def key_lines(*pems: str | bytes) -> list[str]:
    """The canaries: every line of key material (never shown, escaped or not)."""
    lines = []
    for pem in pems:
        text = pem.decode() if isinstance(pem, bytes) else pem
        lines += [line for line in text.splitlines() if line and not line.startswith("-----")]
    return lines


def ssh_pem() -> tuple[str, str]:
    """An OpenSSH private key, and the public half of another as a host key."""
    return ssh_key_pair()[0], ssh_key_pair()[1]


def test_every_pem_field_is_refused_with_the_fix_by_validate_and_render(tmp_path: Path) -> None:
    app_key, (ssh_key, host_key), kube_key = key_pem(rsa_key()), ssh_pem(), ec_key()
    client_key, client_cert = key_pem(kube_key), certificate_pem(kube_key)
    ca = certificate_pem(ec_key(), "connc test CA")
    secrets = key_lines(app_key, ssh_key, client_key, client_cert)
    repo = make_repo(tmp_path / "repo", connections={
        "gh": connection("gh", type_="github-app", credential={"privateKey": escaped(app_key)},
                         spec={"clientId": "Iv23liFAKE0000000000", "installationId": 4242}),
        "git-ssh": connection("git-ssh", type_="git", credential={"sshPrivateKey": escaped(ssh_key)},
                              spec={"url": "ssh://git@git.example.com/infra.git",
                                    "knownHosts": f"git.example.com {host_key}"}),
        # base64 wrapped at 76 columns, the breaks escaped; and base64 of an escaped PEM.
        "k8s-key": connection("k8s-key", type_="kubernetes", spec={"server": "https://k8s.example.com"},
                              credential={"clientCertificateData":
                                          base64.b64encode(client_cert).decode(),
                                          "clientKeyData": escaped(base64.encodebytes(
                                              client_key.encode()))}),
        "k8s-cert": connection("k8s-cert", type_="kubernetes",
                               spec={"server": "https://k8s.example.com"},
                               credential={"clientCertificateData": base64.b64encode(
                                   escaped(client_cert).encode()).decode(),
                                           "clientKeyData": base64.b64encode(
                                               client_key.encode()).decode()}),
        # Plaintext, checked keyless: CA data whose PEM was escaped before it was encoded.
        "k8s-ca": connection("k8s-ca", type_="kubernetes", credential={"token": "kube-token"},
                             spec={"server": "https://k8s.example.com",
                                   "certificateAuthorityData": base64.b64encode(
                                       escaped(ca).encode()).decode()}),
    }, pipelines={"deploy": pipeline("deploy", "gh")})

    checked = connc("validate", "--decrypt", "--repo", str(repo), key=TEST_KEY_FILE, cwd=REPO_ROOT)
    assert checked.returncode == 1, checked.stderr
    shown = checked.stdout + checked.stderr
    for line in secrets:
        assert line not in shown
    fixes = {
        "gh": "set it from the key file, with its real line breaks, "
              "`connc secret set gh privateKey < key.pem`",
        "git-ssh": "set it from the key file, with its real line breaks, "
                   "`connc secret set git-ssh sshPrivateKey < key.pem`",
        "k8s-key": "set it from the PEM file, `base64 < client.key | connc secret set k8s-key "
                   "clientKeyData`",
        "k8s-cert": "set it from the PEM file, `base64 < client.crt | connc secret set k8s-cert "
                    "clientCertificateData`",
        "k8s-ca": "write it on one line, as `base64 < ca.crt | tr -d '\\n'` prints it",
    }
    for connection_id, fix in fixes.items():
        lines = [line for line in shown.splitlines()
                 if line.startswith(f"connections.d/{connection_id}.sops.yaml:")]
        assert any(ESCAPED in text and text.endswith(fix) for text in lines), (connection_id,
                                                                               shown)

    rendered = connc("render", "--pipeline", "deploy", "--repo", str(repo), "--out",
                     str(tmp_path / "bundle"), key=TEST_KEY_FILE, cwd=REPO_ROOT)
    assert rendered.returncode == 1, rendered.stderr
    assert not (tmp_path / "bundle").exists()
    assert ESCAPED in rendered.stderr and fixes["gh"] in rendered.stderr
    for line in secrets:
        assert line not in rendered.stdout + rendered.stderr


def test_secret_set_refuses_an_escaped_key_and_says_how_to_set_it(tmp_path: Path) -> None:
    app_key = key_pem(rsa_key())
    repo = make_repo(tmp_path / "repo", connections={"gh": connection(
        "gh", type_="github-app", credential={"privateKey": app_key},
        spec={"clientId": "Iv23liFAKE0000000000", "installationId": 4242})})
    before = (repo / "connections.d/gh.sops.yaml").read_bytes()
    pasted = escaped(key_pem(rsa_key(1)))  # another key than the file's
    ran = connc("secret", "set", "gh", "privateKey", "--repo", repo, input=pasted, cwd=REPO_ROOT)
    assert ran.returncode == 1, ran.stderr
    assert ESCAPED in ran.stderr
    assert "`connc secret set gh privateKey < key.pem`" in ran.stderr
    for line in key_lines(app_key, pasted.replace("\\n", "\n")):
        assert line not in ran.stdout + ran.stderr
    assert (repo / "connections.d/gh.sops.yaml").read_bytes() == before
