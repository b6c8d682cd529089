"""Error classes and codes the SDK raises, and the SDK's own retry policy riding over injected
503s and 429s with `Retry-After`."""

import time

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from conftest import client_secret_credential, sdk_client, unique

MAX_VALUE_CHARS = 25_600


def test_missing_secret_raises_not_found(client):
    with pytest.raises(ResourceNotFoundError) as missing:
        client.get_secret(unique("absent"))
    assert missing.value.status_code == 404
    assert missing.value.error.code == "SecretNotFound"
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(unique("absent"))


def test_name_being_deleted_raises_exists(client):
    name = unique("conflict")
    client.set_secret(name, "v")
    client.begin_delete_secret(name).wait()
    with pytest.raises(ResourceExistsError) as conflict:
        client.set_secret(name, "v")
    assert conflict.value.status_code == 409
    assert conflict.value.error.code == "Conflict"


def test_disabled_secret_is_forbidden(client):
    name = unique("disabled")
    client.set_secret(name, "hidden")
    client.update_secret_properties(name, enabled=False)
    with pytest.raises(HttpResponseError) as forbidden:
        client.get_secret(name)
    assert forbidden.value.status_code == 403
    assert forbidden.value.error.code == "Forbidden"
    assert forbidden.value.error.innererror["code"] == "SecretDisabled"
    assert "disabled" in forbidden.value.message
    client.update_secret_properties(name, enabled=True)
    assert client.get_secret(name).value == "hidden"


def test_principal_without_get_is_forbidden(vault_env, admin, client):
    name = unique("policy")
    client.set_secret(name, "not-for-you")
    client_id, client_secret = admin.add_principal(["list", "set"])
    limited = sdk_client(vault_env, client_secret_credential(vault_env, client_id, client_secret))
    # What it may do, it can.
    assert name in {p.name for p in limited.list_properties_of_secrets()}
    with pytest.raises(HttpResponseError) as forbidden:
        limited.get_secret(name)
    assert forbidden.value.status_code == 403
    assert forbidden.value.error.code == "Forbidden"
    assert forbidden.value.error.innererror["code"] == "ForbiddenByPolicy"
    assert f"appid={client_id}" in forbidden.value.message
    assert "secrets get permission" in forbidden.value.message


def test_invalid_name_is_a_bad_parameter(client):
    for bad in ("under_score", "x" * 128, "dot.ted"):
        with pytest.raises(HttpResponseError) as refused:
            client.set_secret(bad, "v")
        assert refused.value.status_code == 400, bad
        assert refused.value.error.code == "BadParameter", bad


def test_value_over_the_limit_is_a_bad_parameter(client):
    name = unique("big")
    assert len(client.set_secret(name, "x" * MAX_VALUE_CHARS).value) == MAX_VALUE_CHARS
    with pytest.raises(HttpResponseError) as refused:
        client.set_secret(name, "x" * (MAX_VALUE_CHARS + 1))
    assert refused.value.status_code == 400
    assert refused.value.error.code == "BadParameter"
    assert len(client.get_secret(name).value) == MAX_VALUE_CHARS


@pytest.mark.parametrize("status", [503, 429])
def test_sdk_retries_over_faults_with_retry_after(client, admin, status):
    name = unique(f"retry-{status}")
    client.set_secret(name, "survives")
    admin.reset_counters()
    admin.add_fault(operation="get_secret", status=status, count=2, retry_after=2)
    started = time.monotonic()
    assert client.get_secret(name).value == "survives"
    elapsed = time.monotonic() - started
    assert admin.counters()["get_secret"] == {status: 2, 200: 1}
    # The SDK waited as told by Retry-After (2 s per retry), not its own exponential backoff
    # (0.8 s, then 1.6 s: 2.4 s in all).
    assert elapsed >= 4.0


def test_sdk_retries_sets_over_429(client, admin):
    name = unique("retry-set")
    admin.reset_counters()
    admin.add_fault(operation="set_secret", status=429, count=1, retry_after=1)
    assert client.set_secret(name, "after-429").value == "after-429"
    assert admin.counters()["set_secret"] == {429: 1, 200: 1}
    assert client.get_secret(name).value == "after-429"
