"""The rest of the secrets data plane through the SDK: paging, versions, update, deleted secrets,
recover, purge, backup and restore."""

import math
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from conftest import unique


def test_list_properties_pages_of_seven_over_sixty_secrets(client, admin):
    # An empty vault, so the page count is exactly ours.
    admin.reset()
    names = sorted(f"page-{i:02d}" for i in range(60))
    for name in names:
        client.set_secret(name, "v")
    admin.reset_counters()
    listed = [p.name for p in client.list_properties_of_secrets(max_page_size=7)]
    assert sorted(listed) == names
    assert len(listed) == 60
    counters = admin.counters()
    assert counters["list_secrets"] == {200: math.ceil(60 / 7)}


def test_list_properties_of_secret_versions(client):
    name = unique("versions")
    versions = [client.set_secret(name, value).properties.version for value in ("1", "2", "3")]
    listed = list(client.list_properties_of_secret_versions(name))
    assert sorted(v.version for v in listed) == sorted(versions)
    assert all(v.name == name for v in listed)
    for version, value in zip(versions, ("1", "2", "3")):
        assert client.get_secret(name, version).value == value
    assert client.get_secret(name).value == "3"


def test_update_secret_properties_tags_content_type_enabled_expiry(client):
    name = unique("update")
    first = client.set_secret(name, "one").properties.version
    client.set_secret(name, "two")
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)

    updated = client.update_secret_properties(
        name, content_type="text/plain", tags={"env": "test"}, expires_on=expires
    )
    assert updated.content_type == "text/plain"
    assert updated.tags == {"env": "test"}
    assert updated.expires_on == expires
    assert updated.enabled is True
    got = client.get_secret(name)
    # Update never changes the value.
    assert got.value == "two"
    assert got.properties.content_type == "text/plain"
    assert got.properties.tags == {"env": "test"}
    assert got.properties.expires_on == expires

    # By version: only that version changes.
    old = client.update_secret_properties(name, first, enabled=False, tags={"old": "yes"})
    assert old.version == first
    assert old.enabled is False
    assert old.tags == {"old": "yes"}
    by_version = {v.version: v for v in client.list_properties_of_secret_versions(name)}
    assert by_version[first].enabled is False
    latest = client.get_secret(name).properties
    assert latest.enabled is True
    assert latest.tags == {"env": "test"}

    # Disabling the latest version.
    disabled = client.update_secret_properties(name, enabled=False)
    assert disabled.enabled is False
    listed = {p.name: p for p in client.list_properties_of_secrets()}
    assert listed[name].enabled is False


def test_deleted_secrets_listed_got_recovered_and_purged(client):
    kept, purged = unique("recover"), unique("purge")
    client.set_secret(kept, "kept-value")
    client.set_secret(purged, "purged-value")
    client.begin_delete_secret(kept).wait()
    client.begin_delete_secret(purged).wait()

    deleted_names = {d.name for d in client.list_deleted_secrets()}
    assert {kept, purged} <= deleted_names
    deleted = client.get_deleted_secret(kept)
    assert deleted.name == kept
    assert deleted.recovery_id.endswith(f"/deletedsecrets/{kept}")
    assert deleted.deleted_date is not None
    assert deleted.scheduled_purge_date - deleted.deleted_date == timedelta(days=90)
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(kept)

    poller = client.begin_recover_deleted_secret(kept)
    assert poller.result().name == kept
    poller.wait()
    assert poller.done()
    assert client.get_secret(kept).value == "kept-value"
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(kept)

    assert client.purge_deleted_secret(purged) is None
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(purged)
    assert purged not in {d.name for d in client.list_deleted_secrets()}
    with pytest.raises(ResourceNotFoundError):
        client.purge_deleted_secret(purged)


def test_backup_and_restore_round_trip_every_version(client):
    name = unique("backup")
    values = ["first", "second", "third"]
    versions = [client.set_secret(name, v).properties.version for v in values]
    client.update_secret_properties(name, content_type="text/plain", tags={"t": "1"})
    blob = client.backup_secret(name)
    assert isinstance(blob, bytes) and len(blob) > 0

    # Refused while the name exists.
    with pytest.raises(ResourceExistsError):
        client.restore_secret_backup(blob)

    client.begin_delete_secret(name).wait()
    client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)

    restored = client.restore_secret_backup(blob)
    assert restored.name == name
    assert restored.version == versions[-1]
    assert restored.content_type == "text/plain"
    assert restored.tags == {"t": "1"}
    listed = sorted(v.version for v in client.list_properties_of_secret_versions(name))
    assert listed == sorted(versions)
    for version, value in zip(versions, values):
        assert client.get_secret(name, version).value == value
    assert client.get_secret(name).value == "third"


def test_case_insensitive_names(client):
    base = unique("case")
    upper = "Foo-" + base
    client.set_secret(upper, "v1")
    got = client.get_secret(upper.lower())
    assert got.value == "v1"
    assert got.name.lower() == upper.lower()
    # Setting it again under another case adds a version to the same secret.
    client.set_secret(upper.upper(), "v2")
    assert client.get_secret(upper.lower()).value == "v2"
    assert len(list(client.list_properties_of_secret_versions(upper))) == 2
    entries = [p for p in client.list_properties_of_secrets() if p.name.lower() == upper.lower()]
    assert len(entries) == 1
