"""The official SDK against a vault without soft delete (`--no-soft-delete`): a delete is final,
the SDK's delete poller finishes at once (no `recoveryId`), and the name is free again."""

import uuid

import pytest
from azure.core.exceptions import ResourceNotFoundError
from conftest import local_vault, sdk_client


@pytest.fixture(scope="module")
def variables():
    with local_vault("AKVFS_LOCAL_VAULT_ENV_NO_SOFT_DELETE", ["--no-soft-delete"]) as variables:
        yield variables


@pytest.fixture(scope="module")
def client(variables):
    return sdk_client(variables)


def test_delete_is_final_and_the_name_is_free_at_once(client):
    name = f"final-{uuid.uuid4().hex[:8]}"
    secret = client.set_secret(name, "v")
    assert secret.properties.recovery_level == "Purgeable"
    poller = client.begin_delete_secret(name)
    deleted = poller.result()
    assert deleted.recovery_id is None
    assert poller.done()
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)
    assert client.set_secret(name, "again").value == "again"


def test_certificate_delete_is_final_and_takes_its_secret(variables, client):
    from azure.identity import DefaultAzureCredential
    from azure.keyvault.certificates import CertificateClient
    from test_certificates import make_cert, make_key, pfx

    certs = CertificateClient(
        vault_url=variables["AKVFS_VAULT_URL"],
        credential=DefaultAzureCredential(),
        verify_challenge_resource=False,
    )
    name = f"finalcert-{uuid.uuid4().hex[:8]}"
    key = make_key("ec")
    cert = make_cert(key, name)
    imported = certs.import_certificate(name, pfx(key, cert))
    assert imported.properties.recovery_level == "Purgeable"
    poller = certs.begin_delete_certificate(name)
    deleted = poller.result()
    assert deleted.recovery_id is None
    assert poller.done()
    with pytest.raises(ResourceNotFoundError):
        certs.get_certificate(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    assert certs.import_certificate(name, pfx(key, cert)).name == name
