"""The certificates data plane through Microsoft's azure-keyvault-certificates: import (PFX with
and without password, PEM with a chain), get (latest, by version), policy, list with paging,
versions, update, delete poller, deleted certificates, recover poller, purge, and the backing
secret through SecretClient. Certificates are made here with `cryptography`."""

import base64
import datetime
import hashlib
import math

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.keyvault.certificates import (
    CertificateClient,
    CertificateContentType,
    CertificatePolicy,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import unique

PKCS12 = "application/x-pkcs12"
PEM = "application/x-pem-file"


@pytest.fixture(scope="session")
def certs(vault_env):
    from azure.identity import DefaultAzureCredential

    return CertificateClient(
        vault_url=vault_env["AKVFS_VAULT_URL"],
        credential=DefaultAzureCredential(),
        verify_challenge_resource=False,
    )


def make_key(kind="ec"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def make_cert(key, cn, issuer_key=None, issuer_name=None, ca=False, days=365):
    """A certificate for `key`, self-signed unless an issuer is given."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=10))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(f"{cn}.example.test")]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def pfx(key, cert, password=None, cas=None, legacy=False):
    if password is None:
        encryption = serialization.NoEncryption()
    elif legacy:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2000)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())
            .build(password)
        )
    else:
        encryption = serialization.BestAvailableEncryption(password)
    return pkcs12.serialize_key_and_certificates(b"akvfs", key, cert, cas, encryption)


def pem_bundle(key, certs_, pkcs1=False):
    fmt = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if pkcs1
        else serialization.PrivateFormat.PKCS8
    )
    text = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    for c in certs_:
        text += c.public_bytes(serialization.Encoding.PEM)
    return text


def same_public_key(a, b):
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_key().public_bytes(
        serialization.Encoding.DER, pub
    ) == b.public_key().public_bytes(serialization.Encoding.DER, pub)


def check_bundle(got, name, cert):
    """What every certificate bundle carries, checked against the certificate imported."""
    assert got.name == name
    version = got.properties.version
    assert len(version) == 32 and all(c in "0123456789abcdef" for c in version)
    assert got.id.endswith(f"/certificates/{name}/{version}")
    assert got.key_id.endswith(f"/keys/{name}/{version}")
    assert got.secret_id.endswith(f"/secrets/{name}/{version}")
    assert bytes(got.cer) == der(cert)
    assert got.properties.x509_thumbprint == hashlib.sha1(der(cert)).digest()
    assert got.properties.not_before == cert.not_valid_before_utc
    assert got.properties.expires_on == cert.not_valid_after_utc
    assert got.properties.enabled is True
    assert got.properties.recovery_level == "Recoverable+Purgeable"


def test_import_pfx_without_password_and_read_its_secret(certs, client):
    name = unique("pfx")
    key = make_key("rsa")
    cert = make_cert(key, name)
    imported = certs.import_certificate(name, pfx(key, cert), tags={"team": "web"})
    check_bundle(imported, name, cert)
    assert imported.properties.tags == {"team": "web"}
    policy = imported.policy
    assert policy.content_type == PKCS12
    assert policy.issuer_name == "Unknown"
    assert policy.subject == f"CN={name}"
    assert policy.key_type == "RSA" and policy.key_size == 2048
    assert policy.exportable is True
    assert policy.san_dns_names == [f"{name}.example.test"]
    assert policy.enhanced_key_usage == ["1.3.6.1.5.5.7.3.1"]
    assert policy.validity_in_months == 13

    got = certs.get_certificate(name)
    check_bundle(got, name, cert)
    assert got.properties.version == imported.properties.version
    assert got.policy.content_type == PKCS12

    # The backing secret: a password-less PFX holding the same key and certificate.
    secret = client.get_secret(name)
    assert secret.properties.content_type == PKCS12
    assert secret.properties.managed is True
    assert secret.properties.key_id == imported.key_id
    assert secret.id == imported.secret_id
    assert secret.properties.version == imported.properties.version
    assert secret.properties.tags == {"team": "web"}
    back_key, back_cert, extra = pkcs12.load_key_and_certificates(
        base64.b64decode(secret.value), None
    )
    assert der(back_cert) == der(cert)
    assert extra == []
    assert same_public_key(back_key, key)
    assert client.get_secret(name, imported.properties.version).value == secret.value


@pytest.mark.parametrize("legacy", [False, True], ids=["aes-sha256", "3des-sha1"])
def test_import_pfx_with_password_stores_it_without(certs, client, legacy):
    name = unique("pfxpw")
    key = make_key("ec")
    cert = make_cert(key, name)
    imported = certs.import_certificate(
        name, pfx(key, cert, b"s3cret pass", legacy=legacy), password="s3cret pass"
    )
    check_bundle(imported, name, cert)
    assert imported.policy.key_type == "EC"
    assert imported.policy.key_curve_name == "P-256"
    back_key, back_cert, _ = pkcs12.load_key_and_certificates(
        base64.b64decode(client.get_secret(name).value), None
    )
    assert der(back_cert) == der(cert)
    assert same_public_key(back_key, key)


def test_import_refuses_a_wrong_password_or_garbage(certs):
    key = make_key("ec")
    cert = make_cert(key, "wrong")
    with pytest.raises(HttpResponseError) as wrong:
        certs.import_certificate(unique("wrongpw"), pfx(key, cert, b"right"), password="wrong")
    assert wrong.value.status_code == 400
    assert "PKCS#12" in wrong.value.message
    with pytest.raises(HttpResponseError) as garbage:
        certs.import_certificate(unique("garbage"), b"not a certificate")
    assert garbage.value.status_code == 400
    # A key that is not the certificate's.
    with pytest.raises(HttpResponseError) as mismatch:
        certs.import_certificate(
            unique("mismatch"),
            pem_bundle(make_key("ec"), [cert]),
            policy=CertificatePolicy(content_type=CertificateContentType.pem),
        )
    assert mismatch.value.status_code == 400
    assert "private key" in mismatch.value.message


@pytest.mark.parametrize("pkcs1", [False, True], ids=["pkcs8-key", "pkcs1-key"])
def test_import_pem_with_a_chain_exports_pkcs8_key_then_chain(certs, client, pkcs1):
    name = unique("pem")
    ca_key = make_key("rsa")
    ca = make_cert(ca_key, "akvfs test CA", ca=True)
    key = make_key("rsa")
    leaf = make_cert(key, name, issuer_key=ca_key, issuer_name=ca.subject)
    policy = CertificatePolicy(content_type=CertificateContentType.pem)
    imported = certs.import_certificate(
        name, pem_bundle(key, [leaf, ca], pkcs1=pkcs1), policy=policy
    )
    check_bundle(imported, name, leaf)
    assert imported.policy.content_type == PEM

    secret = client.get_secret(name)
    assert secret.properties.content_type == PEM
    assert secret.properties.managed is True
    assert secret.properties.key_id == imported.key_id
    text = secret.value.encode()
    assert text.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert text.endswith(b"-----END CERTIFICATE-----\n")
    back_key = serialization.load_pem_private_key(text, None)
    assert same_public_key(back_key, key)
    chain = x509.load_pem_x509_certificates(text)
    assert [der(c) for c in chain] == [der(leaf), der(ca)]


def test_versions_get_by_version_and_policy(certs):
    name = unique("versions")
    key1, key2 = make_key("ec"), make_key("rsa")
    cert1, cert2 = make_cert(key1, name), make_cert(key2, name)
    v1 = certs.import_certificate(name, pfx(key1, cert1)).properties.version
    v2 = certs.import_certificate(name, pfx(key2, cert2)).properties.version
    assert v1 != v2
    assert bytes(certs.get_certificate_version(name, v1).cer) == der(cert1)
    assert bytes(certs.get_certificate_version(name, v2).cer) == der(cert2)
    assert bytes(certs.get_certificate(name).cer) == der(cert2)
    versions = {v.version: v for v in certs.list_properties_of_certificate_versions(name)}
    assert set(versions) == {v1, v2}
    assert versions[v1].x509_thumbprint == hashlib.sha1(der(cert1)).digest()
    assert all(v.id.endswith(f"/certificates/{name}/{v.version}") for v in versions.values())
    # The policy follows the latest import.
    policy = certs.get_certificate_policy(name)
    assert policy.key_type == "RSA"
    assert policy.content_type == PKCS12
    with pytest.raises(ResourceNotFoundError) as missing:
        certs.get_certificate_version(name, "0" * 32)
    assert missing.value.error.code == "CertificateNotFound"


def test_list_certificates_pages_and_secrets_list_them_as_managed(certs, client, admin):
    admin.reset()
    names = sorted(f"listcert-{i:02d}" for i in range(7))
    for name in names:
        key = make_key("ec")
        certs.import_certificate(name, pfx(key, make_cert(key, name)))
    client.set_secret("plain-secret", "v")
    admin.reset_counters()
    listed = list(certs.list_properties_of_certificates(max_page_size=3))
    assert [c.name for c in listed] == names
    assert all(c.x509_thumbprint and c.enabled for c in listed)
    assert admin.counters()["list_certificates"] == {200: math.ceil(7 / 3)}

    secrets = {s.name: s for s in client.list_properties_of_secrets()}
    assert set(secrets) == set(names) | {"plain-secret"}
    for name in names:
        assert secrets[name].managed is True
        assert secrets[name].content_type == PKCS12
        assert secrets[name].tags == {}
    assert not secrets["plain-secret"].managed


def test_update_tags_and_enabled(certs, client):
    name = unique("update")
    key = make_key("ec")
    imported = certs.import_certificate(name, pfx(key, make_cert(key, name)))
    updated = certs.update_certificate_properties(name, tags={"env": "test"})
    assert updated.properties.tags == {"env": "test"}
    assert certs.get_certificate(name).properties.tags == {"env": "test"}
    assert client.get_secret(name).properties.tags == {"env": "test"}

    disabled = certs.update_certificate_properties(
        name, imported.properties.version, enabled=False
    )
    assert disabled.properties.enabled is False
    assert certs.get_certificate(name).properties.enabled is False
    # A disabled certificate's secret cannot be read, as a disabled secret.
    with pytest.raises(HttpResponseError) as forbidden:
        client.get_secret(name)
    assert forbidden.value.status_code == 403
    certs.update_certificate_properties(name, enabled=True)
    assert client.get_secret(name).properties.enabled is True


def test_delete_poller_deleted_recover_poller_and_purge(certs, client):
    name = unique("delete")
    key = make_key("ec")
    cert = make_cert(key, name)
    certs.import_certificate(name, pfx(key, cert))

    poller = certs.begin_delete_certificate(name)
    deleted = poller.result()
    assert deleted.name == name
    assert deleted.recovery_id.endswith(f"/deletedcertificates/{name}")
    assert deleted.scheduled_purge_date - deleted.deleted_on == datetime.timedelta(days=90)
    poller.wait()

    got = certs.get_deleted_certificate(name)
    assert bytes(got.cer) == der(cert)
    assert got.recovery_id == deleted.recovery_id
    assert name in {d.name for d in certs.list_deleted_certificates()}
    # Neither the certificate nor its secret answers; the name cannot be reused.
    with pytest.raises(ResourceNotFoundError) as gone:
        certs.get_certificate(name)
    assert gone.value.error.code == "CertificateNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    with pytest.raises(ResourceExistsError) as conflict:
        certs.import_certificate(name, pfx(key, cert))
    assert conflict.value.status_code == 409
    assert "deleted but recoverable" in conflict.value.message
    # A deleted certificate is no deleted secret.
    assert name not in {d.name for d in client.list_deleted_secrets()}

    recovered = certs.begin_recover_deleted_certificate(name)
    recovered.wait()
    assert recovered.result().name == name
    assert bytes(certs.get_certificate(name).cer) == der(cert)
    assert client.get_secret(name).properties.managed is True

    certs.begin_delete_certificate(name).wait()
    certs.purge_deleted_certificate(name)
    with pytest.raises(ResourceNotFoundError) as purged:
        certs.get_deleted_certificate(name)
    assert purged.value.error.code == "CertificateNotFound"
    # The name is free again.
    certs.import_certificate(name, pfx(key, cert))


def test_the_backing_secret_refuses_changes_through_the_secrets_api(certs, client):
    name = unique("managed")
    key = make_key("ec")
    certs.import_certificate(name, pfx(key, make_cert(key, name)))
    for change in (
        lambda: client.set_secret(name, "overwrite"),
        lambda: client.update_secret_properties(name, tags={"x": "y"}),
        lambda: client.begin_delete_secret(name),
    ):
        with pytest.raises(HttpResponseError) as refused:
            change()
        assert refused.value.status_code == 403
    assert client.get_secret(name).properties.content_type == PKCS12
    # A plain secret's name cannot take a certificate either.
    plain = unique("plain")
    client.set_secret(plain, "v")
    with pytest.raises(ResourceExistsError):
        certs.import_certificate(plain, pfx(key, make_cert(key, plain)))


def test_creating_from_a_policy_is_refused_clearly(certs):
    with pytest.raises(HttpResponseError) as refused:
        certs.begin_create_certificate(unique("create"), CertificatePolicy.get_default())
    assert refused.value.status_code == 501
    assert "import" in refused.value.message
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate(unique("never"))
