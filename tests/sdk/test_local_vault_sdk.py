"""The local vault checked against the official Azure SDK for Python.

Replays the Key Vault secrets quickstart (set, get, delete and wait, set again -> conflict,
recover, list, versions, update, purge) with `DefaultAzureCredential()` configured by nothing but
the variables of the vault's `env` file (the managed identity endpoint + CA bundle).

Which vault: `AKVFS_LOCAL_VAULT_ENV=PATH` uses a running vault's env file (the Rust test
`local_vault_python_sdk` starts one in-process); otherwise `$AKVFS_BIN local-vault --listen
127.0.0.1:0 --data TMP` is started (AKVFS_BIN defaults to target/debug/akvfs).
"""

import uuid

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from conftest import local_vault, sdk_client


@pytest.fixture(scope="module")
def vault_env():
    with local_vault("AKVFS_LOCAL_VAULT_ENV") as variables:
        yield variables


@pytest.fixture(scope="module")
def client(vault_env):
    return sdk_client(vault_env)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_quickstart_set_get_delete_conflict_recover(client):
    name = unique("quickstart")
    secret = client.set_secret(name, "quickstart-value")
    assert secret.name == name
    assert len(secret.properties.version) == 32
    assert client.get_secret(name).value == "quickstart-value"

    # The SDK's poller answers result() at once; wait() polls until the deletion completed.
    poller = client.begin_delete_secret(name)
    deleted = poller.result()
    poller.wait()
    assert deleted.name == name
    assert deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
    assert deleted.scheduled_purge_date is not None
    # The poller waited until the deleted secret exists.
    assert client.get_deleted_secret(name).name == name

    with pytest.raises(ResourceExistsError) as conflict:
        client.set_secret(name, "new-value")
    assert "deleted but recoverable" in str(conflict.value)

    poller = client.begin_recover_deleted_secret(name)
    recovered = poller.result()
    poller.wait()
    assert recovered.name == name
    assert client.get_secret(name).value == "quickstart-value"


def test_list_properties_follows_next_link_over_more_than_one_page(client):
    prefix = unique("many")
    names = [f"{prefix}-{i:02d}" for i in range(30)]
    for n in names:
        client.set_secret(n, "v")
    listed = [p.name for p in client.list_properties_of_secrets()]
    ours = [n for n in listed if n.startswith(prefix)]
    assert ours == names
    assert listed == sorted(listed, key=str.lower)


def test_versions_update_and_disabled(client):
    name = unique("versions")
    first = client.set_secret(name, "one")
    client.set_secret(name, "two")
    client.set_secret(name, "three")
    versions = list(client.list_properties_of_secret_versions(name))
    assert len(versions) == 3
    assert first.properties.version in {v.version for v in versions}
    assert client.get_secret(name, first.properties.version).value == "one"

    updated = client.update_secret_properties(
        name, content_type="text/plain", tags={"foo": "updated tag"}
    )
    assert updated.content_type == "text/plain"
    assert updated.tags == {"foo": "updated tag"}
    got = client.get_secret(name)
    assert got.value == "three"
    assert got.properties.content_type == "text/plain"

    client.update_secret_properties(name, enabled=False)
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as forbidden:
        client.get_secret(name)
    assert forbidden.value.status_code == 403


def test_delete_then_purge_frees_the_name(client):
    name = unique("purge")
    client.set_secret(name, "v")
    client.begin_delete_secret(name).wait()
    assert name in [d.name for d in client.list_deleted_secrets()]
    client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)
    assert client.set_secret(name, "again").value == "again"


def test_backup_restore(client):
    name = unique("backup")
    client.set_secret(name, "kept")
    blob = client.backup_secret(name)
    client.begin_delete_secret(name).wait()
    client.purge_deleted_secret(name)
    restored = client.restore_secret_backup(blob)
    assert restored.name == name
    assert client.get_secret(name).value == "kept"


def test_missing_secret_raises_not_found(client):
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(unique("absent"))


def test_client_secret_credential_through_msal_and_the_openid_metadata(vault_env):
    """MSAL (inside azure-identity) fetches the vault's OpenID metadata and uses its token
    endpoint with the env file's client credentials; instance discovery must be off, since it
    would ask Microsoft's servers."""
    from azure.identity import ClientSecretCredential
    from azure.keyvault.secrets import SecretClient

    credential = ClientSecretCredential(
        vault_env["AKVFS_TENANT_ID"],
        vault_env["AKVFS_CLIENT_ID"],
        vault_env["AKVFS_CLIENT_SECRET"],
        authority=vault_env["AKVFS_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )
    client = SecretClient(
        vault_url=vault_env["AKVFS_VAULT_URL"],
        credential=credential,
        verify_challenge_resource=False,
    )
    name = unique("msal")
    client.set_secret(name, "through-msal")
    assert client.get_secret(name).value == "through-msal"


def test_wrong_client_secret_is_refused(vault_env):
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    credential = ClientSecretCredential(
        vault_env["AKVFS_TENANT_ID"],
        vault_env["AKVFS_CLIENT_ID"],
        "not-the-secret",
        authority=vault_env["AKVFS_AUTHORITY_HOST"],
        disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError) as refused:
        credential.get_token(vault_env["AKVFS_VAULT_URL"] + "/.default")
    assert "AADSTS7000215" in str(refused.value)
