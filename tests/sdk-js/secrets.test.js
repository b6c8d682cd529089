// The secrets data plane through Microsoft's @azure/keyvault-secrets: set and get (latest, by
// version), update, paging, versions, the delete and recover pollers, deleted secrets, purge,
// the 409 on a deleted name, backup and restore, and the errors the SDK surfaces as RestError.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  assertServiceError,
  counters,
  rejection,
  resetCounters,
  resetVault,
  secretClient,
  unique,
  vaultUrl,
} from "./vault.js";

const client = secretClient();
// The vault finishes a deletion after 300 ms; poll faster than the SDK's 2 s default so that the
// pollers do see the deletion in progress.
const poll = { intervalInMs: 100 };

function sortedNames(items) {
  return items.map((item) => item.name).sort();
}

test("setSecret then getSecret: latest, by version, attributes and ids", async () => {
  const name = unique("set");
  const expiresOn = new Date(Math.floor(Date.now() / 1000) * 1000 + 30 * 24 * 3600 * 1000);
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000 - 3600 * 1000);
  const first = await client.setSecret(name, "first value", {
    contentType: "text/plain",
    tags: { env: "test", owner: "js" },
    expiresOn,
    notBefore,
  });
  assert.equal(first.name, name);
  assert.equal(first.value, "first value");
  assert.match(first.properties.version, /^[0-9a-f]{32}$/);
  assert.equal(first.properties.id, `${vaultUrl}/secrets/${name}/${first.properties.version}`);
  assert.equal(first.properties.vaultUrl, vaultUrl);
  assert.equal(first.properties.contentType, "text/plain");
  assert.deepEqual(first.properties.tags, { env: "test", owner: "js" });
  assert.equal(first.properties.enabled, true);
  assert.deepEqual(first.properties.expiresOn, expiresOn);
  assert.deepEqual(first.properties.notBefore, notBefore);
  assert.ok(first.properties.createdOn instanceof Date);
  assert.ok(Math.abs(first.properties.createdOn.getTime() - Date.now()) < 60_000);
  assert.deepEqual(first.properties.updatedOn, first.properties.createdOn);
  assert.equal(first.properties.recoveryLevel, "Recoverable+Purgeable");
  assert.equal(first.properties.recoverableDays, 90);
  assert.equal(first.properties.managed, undefined);

  // A value with characters JSON escapes, and one beyond the Basic Multilingual Plane.
  const secondValue = 'line one\nline "two"\t\\ é 🔑';
  const second = await client.setSecret(name, secondValue);
  assert.notEqual(second.properties.version, first.properties.version);
  // A new version carries nothing over from the previous one.
  assert.equal(second.properties.contentType, undefined);
  assert.equal(second.properties.expiresOn, undefined);

  const latest = await client.getSecret(name);
  assert.equal(latest.value, secondValue);
  assert.equal(latest.properties.version, second.properties.version);
  assert.equal(latest.properties.id, second.properties.id);

  const byVersion = await client.getSecret(name, { version: first.properties.version });
  assert.equal(byVersion.value, "first value");
  assert.equal(byVersion.properties.version, first.properties.version);
  assert.equal(byVersion.properties.contentType, "text/plain");
  assert.deepEqual(byVersion.properties.tags, { env: "test", owner: "js" });
  assert.deepEqual(byVersion.properties.expiresOn, expiresOn);
});

test("updateSecretProperties: tags and contentType, by version, then enabled=false", async () => {
  const name = unique("update");
  const first = await client.setSecret(name, "one");
  const second = await client.setSecret(name, "two");

  const updated = await client.updateSecretProperties(name, second.properties.version, {
    contentType: "application/json",
    tags: { team: "storage" },
  });
  assert.equal(updated.name, name);
  assert.equal(updated.version, second.properties.version);
  assert.equal(updated.contentType, "application/json");
  assert.deepEqual(updated.tags, { team: "storage" });
  assert.equal(updated.enabled, true);
  assert.ok(updated.updatedOn >= updated.createdOn);
  const got = await client.getSecret(name);
  // An update never changes the value.
  assert.equal(got.value, "two");
  assert.equal(got.properties.contentType, "application/json");
  assert.deepEqual(got.properties.tags, { team: "storage" });

  // Only the named version changes.
  const old = await client.updateSecretProperties(name, first.properties.version, {
    enabled: false,
    tags: { old: "yes" },
  });
  assert.equal(old.version, first.properties.version);
  assert.equal(old.enabled, false);
  assert.deepEqual(old.tags, { old: "yes" });
  const versions = new Map();
  for await (const properties of client.listPropertiesOfSecretVersions(name)) {
    versions.set(properties.version, properties);
  }
  assert.equal(versions.get(first.properties.version).enabled, false);
  assert.equal(versions.get(second.properties.version).enabled, true);
  assertServiceError(
    await rejection(client.getSecret(name, { version: first.properties.version })),
    403,
    "Forbidden",
    "SecretDisabled",
  );

  // Disabling the latest version: getSecret fails as the service fails it, properties still list.
  const disabled = await client.updateSecretProperties(name, second.properties.version, {
    enabled: false,
  });
  assert.equal(disabled.enabled, false);
  const error = await rejection(client.getSecret(name));
  assertServiceError(error, 403, "Forbidden", "SecretDisabled");
  assert.equal(error.message, "Operation get is not allowed on a disabled secret.");
  let listed;
  for await (const properties of client.listPropertiesOfSecrets()) {
    if (properties.name === name) listed = properties;
  }
  assert.equal(listed?.enabled, false);
  assert.deepEqual(listed?.tags, { team: "storage" });

  // Enabled again, it answers.
  await client.updateSecretProperties(name, second.properties.version, { enabled: true });
  assert.equal((await client.getSecret(name)).value, "two");
});

test("listPropertiesOfSecrets pages by maxPageSize, one request a page", async () => {
  // An empty vault, so the page count is exactly ours.
  await resetVault();
  const names = Array.from({ length: 23 }, (_, i) => `page-${String(i).padStart(2, "0")}`);
  for (const name of names) {
    await client.setSecret(name, `value of ${name}`);
  }
  await resetCounters();
  const pages = [];
  for await (const page of client.listPropertiesOfSecrets().byPage({ maxPageSize: 5 })) {
    pages.push(page);
  }
  assert.equal(pages.length, Math.ceil(names.length / 5));
  for (const page of pages) {
    assert.ok(page.length > 0 && page.length <= 5, `page of ${page.length}`);
  }
  const listed = pages.flat();
  assert.deepEqual(sortedNames(listed), names);
  for (const properties of listed) {
    // Listing never carries values, and the id is the secret's, without a version.
    assert.equal(properties.value, undefined);
    assert.equal(properties.id, `${vaultUrl}/secrets/${properties.name}`);
    assert.equal(properties.version, undefined);
    assert.equal(properties.enabled, true);
  }
  assert.deepEqual((await counters()).list_secrets, { 200: pages.length });

  // (The SDK maps each page to a new array, which drops the page's continuationToken: resuming
  // from one cannot be checked through this SDK.)

  // The plain iterator walks every page too.
  const all = [];
  for await (const properties of client.listPropertiesOfSecrets()) all.push(properties);
  assert.deepEqual(sortedNames(all), names);
});

test("listPropertiesOfSecretVersions lists every version, paged", async () => {
  const name = unique("versions");
  const values = ["1", "2", "3", "4", "5"];
  const versions = [];
  for (const value of values) {
    versions.push((await client.setSecret(name, value)).properties.version);
  }
  const pages = [];
  for await (const page of client.listPropertiesOfSecretVersions(name).byPage({ maxPageSize: 2 })) {
    pages.push(page);
  }
  assert.equal(pages.length, 3);
  const listed = pages.flat();
  assert.deepEqual(listed.map((p) => p.version).sort(), [...versions].sort());
  for (const properties of listed) {
    assert.equal(properties.name, name);
    assert.equal(properties.id, `${vaultUrl}/secrets/${name}/${properties.version}`);
  }
  for (const [i, version] of versions.entries()) {
    assert.equal((await client.getSecret(name, { version })).value, values[i]);
  }
  // The versions of a name that does not exist: an empty list, as the service answers.
  const none = [];
  for await (const p of client.listPropertiesOfSecretVersions(unique("never-set"))) none.push(p);
  assert.deepEqual(none, []);
});

test("delete poller, deleted secret, recover poller, delete again and purge", async () => {
  const name = unique("lifecycle");
  const set = await client.setSecret(name, "kept value", { tags: { k: "v" } });

  await resetCounters();
  const deletePoller = await client.beginDeleteSecret(name, poll);
  // The first answer is the DELETE's own: already a deleted secret, recovery id included.
  const early = deletePoller.getResult();
  assert.equal(early?.name, name);
  assert.equal(early?.properties.recoveryId, `${vaultUrl}/deletedsecrets/${name}`);
  const deleted = await deletePoller.pollUntilDone();
  assert.ok(deletePoller.isDone());
  assert.equal(deleted.name, name);
  assert.equal(deleted.properties.recoveryId, `${vaultUrl}/deletedsecrets/${name}`);
  assert.ok(deleted.properties.deletedOn instanceof Date);
  assert.equal(
    deleted.properties.scheduledPurgeDate.getTime() - deleted.properties.deletedOn.getTime(),
    90 * 24 * 3600 * 1000,
  );
  const polled = (await counters()).get_deleted_secret;
  // The poller saw the deletion in progress (404) before it completed (200).
  assert.ok(polled?.[404] >= 1, JSON.stringify(polled));
  assert.equal(polled?.[200], 1);

  const got = await client.getDeletedSecret(name);
  assert.equal(got.name, name);
  assert.equal(got.properties.version, set.properties.version);
  assert.deepEqual(got.properties.tags, { k: "v" });
  assert.deepEqual(got.properties.deletedOn, deleted.properties.deletedOn);
  assertServiceError(await rejection(client.getSecret(name)), 404, "SecretNotFound", undefined);

  const deletedNames = [];
  for await (const page of client.listDeletedSecrets().byPage({ maxPageSize: 1 })) {
    assert.ok(page.length <= 1);
    deletedNames.push(...page.map((d) => d.name));
  }
  assert.ok(deletedNames.includes(name), `${name} not in ${deletedNames}`);

  await resetCounters();
  const recoverPoller = await client.beginRecoverDeletedSecret(name, poll);
  const recovered = await recoverPoller.pollUntilDone();
  assert.ok(recoverPoller.isDone());
  assert.equal(recovered.name, name);
  assert.equal(recovered.version, set.properties.version);
  assert.deepEqual((await counters()).recover_deleted_secret, { 200: 1 });
  assert.equal((await client.getSecret(name)).value, "kept value");
  assertServiceError(
    await rejection(client.getDeletedSecret(name)),
    404,
    "SecretNotFound",
    undefined,
  );

  // Delete again, then purge: gone for good.
  await (await client.beginDeleteSecret(name, poll)).pollUntilDone();
  await client.purgeDeletedSecret(name);
  assertServiceError(
    await rejection(client.getDeletedSecret(name)),
    404,
    "SecretNotFound",
    undefined,
  );
  assertServiceError(await rejection(client.getSecret(name)), 404, "SecretNotFound", undefined);
  const after = [];
  for await (const d of client.listDeletedSecrets()) after.push(d.name);
  assert.ok(!after.includes(name));
  // The name is free again.
  assert.equal((await client.setSecret(name, "new life")).value, "new life");
});

test("setting a deleted but recoverable name is the service's 409", async () => {
  const name = unique("conflict");
  await client.setSecret(name, "v");
  await (await client.beginDeleteSecret(name, poll)).pollUntilDone();
  const error = await rejection(client.setSecret(name, "again"));
  assertServiceError(error, 409, "Conflict", "ObjectIsDeletedButRecoverable");
  assert.equal(
    error.message,
    `Secret ${name} is currently in a deleted but recoverable state, and its name cannot be ` +
      "reused; in this state, the secret can only be recovered or purged.",
  );
  await client.purgeDeletedSecret(name);
  assert.equal((await client.setSecret(name, "again")).value, "again");
});

test("backupSecret and restoreSecretBackup round-trip every version", async () => {
  const name = unique("backup");
  const values = ["first", "second", "third"];
  const versions = [];
  for (const value of values) {
    versions.push((await client.setSecret(name, value)).properties.version);
  }
  await client.updateSecretProperties(name, versions[2], {
    contentType: "text/plain",
    tags: { t: "1" },
  });
  const blob = await client.backupSecret(name);
  assert.ok(blob instanceof Uint8Array && blob.length > 0);

  // Refused while the name exists.
  assertServiceError(await rejection(client.restoreSecretBackup(blob)), 409, "Conflict", undefined);

  await (await client.beginDeleteSecret(name, poll)).pollUntilDone();
  await client.purgeDeletedSecret(name);
  const restored = await client.restoreSecretBackup(blob);
  assert.equal(restored.name, name);
  assert.equal(restored.version, versions[2]);
  assert.equal(restored.contentType, "text/plain");
  assert.deepEqual(restored.tags, { t: "1" });
  for (const [i, version] of versions.entries()) {
    assert.equal((await client.getSecret(name, { version })).value, values[i]);
  }
  assert.equal((await client.getSecret(name)).value, "third");

  // A blob that is not one of this vault's.
  const corrupt = Uint8Array.from(blob);
  corrupt[Math.floor(corrupt.length / 2)] ^= 0xff;
  await (await client.beginDeleteSecret(name, poll)).pollUntilDone();
  await client.purgeDeletedSecret(name);
  const error = await rejection(client.restoreSecretBackup(corrupt));
  assertServiceError(error, 400, "BadParameter", undefined);
  assert.equal(error.message, "Backup blob contains invalid or corrupt version.");
});

test("a missing secret is a RestError 404 SecretNotFound everywhere", async () => {
  const name = unique("missing");
  const missing = await rejection(client.getSecret(name));
  assertServiceError(missing, 404, "SecretNotFound", undefined);
  assert.equal(
    missing.message,
    `A secret with (name/id) ${name} was not found in this key vault. If you recently deleted ` +
      "this secret you may be able to recover it using the correct recovery command. For help " +
      "resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182",
  );
  assert.equal(missing.response?.status, 404);
  const real = await client.setSecret(unique("exists"), "v");
  assertServiceError(
    await rejection(client.getSecret(real.name, { version: "0".repeat(32) })),
    404,
    "SecretNotFound",
    undefined,
  );
  const deleted = await rejection(client.getDeletedSecret(name));
  assertServiceError(deleted, 404, "SecretNotFound", undefined);
  assert.equal(deleted.message, `Deleted Secret not found: ${name}`);
  assertServiceError(
    await rejection(client.purgeDeletedSecret(name)),
    404,
    "SecretNotFound",
    undefined,
  );
  assertServiceError(
    await rejection(client.updateSecretProperties(name, "0".repeat(32), { tags: {} })),
    404,
    "SecretNotFound",
    undefined,
  );
  assertServiceError(await rejection(client.backupSecret(name)), 404, "SecretNotFound", undefined);
  // A delete poller of a name that does not exist fails at once with the same error.
  assertServiceError(
    await rejection(client.beginDeleteSecret(name, poll)),
    404,
    "SecretNotFound",
    undefined,
  );
});
