"""The Key Vault secrets quickstart's own flow, with both credentials the issue names.

`DefaultAzureCredential()` is configured by nothing but the variables of the vault's env file
(the App Service-style managed-identity endpoint and the CA bundle); `ClientSecretCredential`
goes through MSAL, the vault's OpenID metadata and its token endpoint."""

import pytest
from azure.core.exceptions import ClientAuthenticationError, ResourceExistsError
from conftest import client_secret_credential, sdk_client, unique


def test_quickstart_set_get_delete_conflict_until_recovered_or_purged(client):
    name = unique("quickstart")
    secret = client.set_secret(name, "quickstart-value")
    assert secret.name == name
    assert secret.value == "quickstart-value"
    assert len(secret.properties.version) == 32
    assert client.get_secret(name).value == "quickstart-value"

    poller = client.begin_delete_secret(name)
    deleted = poller.result()
    poller.wait()
    assert poller.done()
    assert deleted.name == name
    assert deleted.recovery_id.endswith(f"/deletedsecrets/{name}")
    assert deleted.scheduled_purge_date is not None
    assert client.get_deleted_secret(name).name == name

    # The quickstart's documented conflict: the name stays taken while deleted.
    with pytest.raises(ResourceExistsError) as conflict:
        client.set_secret(name, "new-value")
    assert conflict.value.status_code == 409
    assert "deleted but recoverable" in str(conflict.value)

    # ... until recovered: the old value is back, and the name is usable.
    client.begin_recover_deleted_secret(name).wait()
    assert client.get_secret(name).value == "quickstart-value"
    assert client.set_secret(name, "after-recover").value == "after-recover"

    # ... or until purged.
    client.begin_delete_secret(name).wait()
    with pytest.raises(ResourceExistsError):
        client.set_secret(name, "still-deleted")
    client.purge_deleted_secret(name)
    assert client.set_secret(name, "after-purge").value == "after-purge"
    assert len(list(client.list_properties_of_secret_versions(name))) == 1


def test_default_azure_credential_from_the_env_file_alone(vault_env, admin):
    from azure.identity import DefaultAzureCredential

    admin.reset_counters()
    client = sdk_client(vault_env, DefaultAzureCredential())
    name = unique("default-credential")
    client.set_secret(name, "through-managed-identity")
    assert client.get_secret(name).value == "through-managed-identity"
    counters = admin.counters()
    # The token came from the vault's own identity endpoint.
    assert counters.get("token", {}).get(200, 0) >= 1
    assert counters["set_secret"].get(200) == 1


def test_client_secret_credential_through_msal_and_the_openid_metadata(vault_env):
    credential = client_secret_credential(
        vault_env, vault_env["AKVFS_CLIENT_ID"], vault_env["AKVFS_CLIENT_SECRET"]
    )
    client = sdk_client(vault_env, credential)
    name = unique("msal")
    client.set_secret(name, "through-msal")
    assert client.get_secret(name).value == "through-msal"


def test_wrong_client_secret_is_refused(vault_env):
    credential = client_secret_credential(
        vault_env, vault_env["AKVFS_CLIENT_ID"], "not-the-secret"
    )
    with pytest.raises(ClientAuthenticationError) as refused:
        credential.get_token(vault_env["AKVFS_VAULT_URL"] + "/.default")
    assert "AADSTS7000215" in str(refused.value)
