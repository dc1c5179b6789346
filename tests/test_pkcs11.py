"""Signing keys in an HSM: a real SoftHSM2 token (Debian's softhsm2) through python-pkcs11.

Each test makes its own token in a temp dir (SOFTHSM2_CONF points at a temp config). The
notes an HSM key signs must be the very bytes a key file with the same seed signs, and
`serve --key pkcs11:...` must make a log that `verify` accepts under the HSM key's vkey.

Skipped only when softhsm2 is missing and cannot be installed here (not root, or apt-get
failed); the skip says which. `make test` installs it when run as root, as in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from otel_audit.anchors import read_anchors
from otel_audit.checkpoint import open_checkpoint
from otel_audit.errors import ConfigError
from otel_audit.note import SignedNote, SignerKey, VerifierKey
from sealer.pkcs11_key import DEFAULT_MODULE, PIN_ENV, Pkcs11Signer, Pkcs11Uri
from sealer.signing import load_signer

from .conftest import run_cli, start_sealer
from .producers import send_audit_events
from .test_note import NOTE, SKEY, TEXT, VKEY

ORIGIN = "hsm.example/audit"
PIN, SO_PIN = "246810", "13579111"


def _softhsm_or_skip() -> None:
    """Install softhsm2 if it is missing and we may (root with apt-get); else skip, saying why."""
    if Path(DEFAULT_MODULE).exists() and shutil.which("softhsm2-util"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            f"softhsm2 is not installed ({DEFAULT_MODULE} or softhsm2-util missing) and cannot be "
            "installed here (not root, or no apt-get): install it with `sudo apt-get install softhsm2`"
        )
    done = subprocess.run(
        ["apt-get", "install", "-y", "-q", "softhsm2"],
        capture_output=True,
        text=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    if done.returncode != 0 or not Path(DEFAULT_MODULE).exists():
        pytest.skip(f"softhsm2 could not be installed: apt-get install softhsm2 said: {done.stderr[-500:]}")


@dataclass
class Token:
    conf: Path
    label: str
    pin_file: Path

    def uri(self, obj: str, extra: str = "") -> str:
        return f"pkcs11:token={self.label};object={obj}?pin-source=file:{self.pin_file}{extra}"

    @property
    def env(self) -> dict[str, str]:
        return {"SOFTHSM2_CONF": str(self.conf)}


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Token]:
    """One token for the module: SoftHSM2 reads SOFTHSM2_CONF once per process (at
    C_Initialize), so every test here uses the same config, each with its own key labels."""
    _softhsm_or_skip()
    home = tmp_path_factory.mktemp("softhsm")
    tokens = home / "tokens"
    tokens.mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    label = "audit token"  # a space: the URI must percent-encode it
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SO_PIN],
            check=True,
            capture_output=True,
        )
        pin_file = home / "pin"
        pin_file.write_text(PIN + "\n")
        yield Token(conf, label.replace(" ", "%20"), pin_file)


def _session(token: Token) -> pkcs11.Session:
    lib = pkcs11.lib(DEFAULT_MODULE)
    return lib.get_token(token_label=token.label.replace("%20", " ")).open(user_pin=PIN, rw=True)


def _import_seed(token: Token, label: str, key: SignerKey) -> None:
    """Put a key file's Ed25519 seed into the token, so both sign with the same key."""
    params = encode_named_curve_parameters("1.3.101.112")
    public = key.verifier().public_key
    with _session(token) as session:
        common = {Attribute.TOKEN: True, Attribute.LABEL: label, Attribute.KEY_TYPE: KeyType.EC_EDWARDS}
        session.create_object(
            {
                **common,
                Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                Attribute.EC_PARAMS: params,
                Attribute.VALUE: key.seed,
                Attribute.SIGN: True,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
            }
        )
        session.create_object(
            {
                **common,
                Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                Attribute.EC_PARAMS: params,
                Attribute.EC_POINT: b"\x04\x20" + public,
                Attribute.VERIFY: True,
            }
        )


def test_uri_attributes_are_percent_decoded_and_checked() -> None:
    uri = Pkcs11Uri.parse(
        "pkcs11:token=My%20Token;object=log%3Bkey;id=%01%ff;type=private"
        "?pin-source=file:/run/pin&module-path=/opt/hsm/lib%2Bx.so"
    )
    assert (uri.token, uri.object, uri.id) == ("My Token", "log;key", b"\x01\xff")
    assert (uri.pin_source, uri.module_path) == ("file:/run/pin", "/opt/hsm/lib+x.so")
    for text, match in [
        ("pkcs11:token=t;object=k?pin-value=1234", "pin-value is refused"),
        ("pkcs11:token=t;object=k;color=red", "unknown path attribute 'color'"),
        ("pkcs11:token=t;object=k;object=j", "given twice"),
        ("pkcs11:token=t%2;object=k", "not followed by two hex digits"),
        ("pkcs11:token=t;object=k;type=public", "type=private"),
        ("pkcs11:token=t", "object=LABEL"),
        ("pkcs11:token=t;object=k?module-name=x", "unknown query attribute"),
        ("/etc/key", "not a PKCS#11 URI"),
    ]:
        with pytest.raises(ConfigError, match=match):
            Pkcs11Uri.parse(text)


def test_hsm_key_signs_the_same_note_as_the_key_file(token: Token) -> None:
    file_key = SignerKey.generate(ORIGIN)
    _import_seed(token, "same", file_key)
    hsm = load_signer(token.uri("same"), ORIGIN)
    assert isinstance(hsm, Pkcs11Signer)
    assert hsm.verifier() == file_key.verifier() and hsm.key_id == file_key.key_id
    text = f"{ORIGIN}\n5\n{'A' * 43}=\n"
    by_hsm = SignedNote.sign(text, hsm).serialize()
    assert by_hsm == SignedNote.sign(text, file_key).serialize()  # Ed25519 is deterministic
    SignedNote.parse(by_hsm).verify(VerifierKey.parse(file_key.verifier().serialize()))
    hsm.close()


def test_hsm_key_reproduces_the_published_go_note(token: Token) -> None:
    """The example key of Go's sumdb/note, imported into the token, signs its example note
    byte for byte (the published vector, no Go toolchain needed)."""
    _import_seed(token, "peter", SignerKey.parse(SKEY))
    hsm = load_signer(token.uri("peter"), "PeterNeumann")
    assert hsm.verifier().serialize() == VKEY
    assert SignedNote.sign(TEXT, hsm).serialize() == NOTE
    assert isinstance(hsm, Pkcs11Signer)
    hsm.close()


def test_keygen_generates_in_the_token_and_prints_its_vkey(token: Token) -> None:
    made = run_cli("keygen", "--origin", ORIGIN, "--pkcs11", token.uri("gen"), "--generate", env=token.env)
    assert made.returncode == 0, made.stderr
    vkey = VerifierKey.parse(made.stdout.strip())
    assert vkey.name == ORIGIN
    again = run_cli("keygen", "--origin", ORIGIN, "--pkcs11", token.uri("gen"), env=token.env)
    assert again.returncode == 0 and again.stdout == made.stdout
    twice = run_cli("keygen", "--origin", ORIGIN, "--pkcs11", token.uri("gen"), "--generate", env=token.env)
    assert twice.returncode == 2 and "already holds a key" in twice.stderr
    with _session(token) as session:  # the private half cannot be read out of the token
        private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label="gen")
        assert private[Attribute.SENSITIVE] and not private[Attribute.EXTRACTABLE]


def test_configuration_errors_say_what_to_do(token: Token, monkeypatch: pytest.MonkeyPatch) -> None:
    """No token, no such object, not Ed25519, wrong PIN, no PIN, no module: ConfigError each."""
    assert (
        run_cli(
            "keygen", "--origin", ORIGIN, "--pkcs11", token.uri("k"), "--generate", env=token.env
        ).returncode
        == 0
    )
    with _session(token) as session:
        session.generate_keypair(
            KeyType.EC,
            mechanism=Mechanism.EC_KEY_PAIR_GEN,
            store=True,
            label="p256",
            public_template={Attribute.EC_PARAMS: encode_named_curve_parameters("1.2.840.10045.3.1.7")},
        )
    wrong_pin = token.pin_file.parent / "wrong-pin"
    wrong_pin.write_text("000000\n")
    cases = [
        (f"pkcs11:token=nope;object=k?pin-source=file:{token.pin_file}", "no PKCS#11 token matches"),
        (token.uri("missing"), "holds no private key"),
        (token.uri("p256"), "is not an Ed25519 key"),
        (f"pkcs11:token={token.label};object=k?pin-source=file:{wrong_pin}", "refused the PIN"),
        (f"pkcs11:token={token.label};object=k", f"set {PIN_ENV}"),
        (token.uri("k", "&module-path=/nonexistent/lib.so"), "does not exist"),
    ]
    monkeypatch.delenv(PIN_ENV, raising=False)
    for uri, match in cases:
        with pytest.raises(ConfigError, match=match):
            load_signer(uri, ORIGIN)
    monkeypatch.setenv(PIN_ENV, PIN)  # the environment variable is the other PIN source
    load_signer(f"pkcs11:token={token.label};object=k", ORIGIN)


@pytest.mark.integration
def test_serve_signs_with_the_hsm_key_and_verify_accepts_it(tmp_path: Path, token: Token) -> None:
    made = run_cli("keygen", "--origin", ORIGIN, "--pkcs11", token.uri("cp"), "--generate", env=token.env)
    assert made.returncode == 0, made.stderr
    vkey = made.stdout.strip()
    sealer = start_sealer(tmp_path, SignerKey.generate(ORIGIN), "--key", token.uri("cp"), "--origin", ORIGIN)
    try:
        assert any(f"verifier key: {vkey}" in line for line in sealer.output), "".join(sealer.output)
        send_audit_events(sealer.endpoint, 300)
    finally:
        assert sealer.stop() == 0, "".join(sealer.output)
    done = run_cli("verify", "--store", sealer.store, "--anchor-dir", str(sealer.anchor_dir), "--key", vkey)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: log hsm.example/audit" in done.stdout and "300 records" in done.stdout
    anchors, problems = read_anchors(sealer.anchor_dir, ORIGIN)
    assert not problems
    assert open_checkpoint(anchors[-1].text, VerifierKey.parse(vkey)).checkpoint.tree_size == 300
    other = run_cli(
        "verify", "--store", sealer.store, "--key", SignerKey.generate(ORIGIN).verifier().serialize()
    )
    assert other.returncode == 1  # signatures by the HSM key do not pass under another key
