// Credentials the env file promises work with the SDKs, and a vault with soft delete off
// (AKVFS_LOCAL_VAULT_ENV_NO_SOFT_DELETE): the delete poller ends at once, as it does on such a
// vault of the service (no recoveryId), and nothing can be recovered.

import assert from "node:assert/strict";
import { test } from "node:test";

import { DefaultAzureCredential, ManagedIdentityCredential } from "@azure/identity";
import { isRestError, SecretClient } from "@azure/keyvault-secrets";

import { credential, env, loadEnv, rejection, unique, vaultUrl } from "./vault.js";

const options = { disableChallengeResourceVerification: true };

test("DefaultAzureCredential and ManagedIdentityCredential take the env file's identity endpoint", async () => {
  // As `source DIR/env` would: the env file's variables and nothing else configure them.
  for (const name of Object.keys(process.env)) {
    if (/^(AZURE_|MSI_|IDENTITY_|IMDS_)/.test(name)) delete process.env[name];
  }
  for (const [name, value] of Object.entries(env)) process.env[name] = value;
  const name = unique("identity");
  const viaManaged = new SecretClient(vaultUrl, new ManagedIdentityCredential(), options);
  assert.equal((await viaManaged.setSecret(name, "managed")).value, "managed");
  const viaDefault = new SecretClient(vaultUrl, new DefaultAzureCredential(), options);
  assert.equal((await viaDefault.getSecret(name)).value, "managed");
  const token = await new ManagedIdentityCredential().getToken(`${vaultUrl}/.default`);
  assert.ok(token.token.split(".").length === 3, "a JWT");
  assert.ok(token.expiresOnTimestamp > Date.now() + 60_000);
});

test("with soft delete off the delete poller ends at once and nothing is recoverable", async () => {
  const other = loadEnv("AKVFS_LOCAL_VAULT_ENV_NO_SOFT_DELETE");
  const client = new SecretClient(
    other.AKVFS_VAULT_URL,
    credential(other.AKVFS_CLIENT_ID, other.AKVFS_CLIENT_SECRET, other),
    options,
  );
  const name = unique("final");
  const set = await client.setSecret(name, "v");
  assert.equal(set.properties.recoveryLevel, "Purgeable");
  const poller = await client.beginDeleteSecret(name, { intervalInMs: 100 });
  assert.ok(poller.isDone(), "done with the DELETE's own answer");
  const deleted = await poller.pollUntilDone();
  assert.equal(deleted.name, name);
  assert.equal(deleted.properties.recoveryId, undefined);
  assert.equal(deleted.properties.deletedOn, undefined);
  const gone = await rejection(client.getSecret(name));
  assert.ok(isRestError(gone));
  assert.equal(gone.statusCode, 404);
  assert.equal(gone.code, "SecretNotFound");
  const notDeleted = await rejection(client.getDeletedSecret(name));
  assert.equal(notDeleted.statusCode, 404);
  // The name is free again at once.
  assert.equal((await client.setSecret(name, "again")).value, "again");
});
