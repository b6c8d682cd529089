// What the SDK's pipeline does with the vault's failures: its retry policies over injected 429s
// (with Retry-After), 503s and dropped connections, access-policy 403s for a limited principal,
// the token endpoint's AADSTS errors through ClientSecretCredential, the service's 400s, and
// short list pages.

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { isRestError, SecretClient } from "@azure/keyvault-secrets";

import {
  admin,
  counters,
  credential,
  rejection,
  resetCounters,
  secretClient,
  unique,
  vaultUrl,
} from "./vault.js";

const client = secretClient();

afterEach(async () => {
  await admin("DELETE", "faults");
  await admin("POST", "paging", { short_pages: false });
});

test("a 429 with Retry-After is waited out and retried by the SDK", async () => {
  const name = unique("throttled");
  await client.setSecret(name, "v");
  await admin("POST", "faults", { operation: "get_secret", status: 429, retry_after: 1, count: 1 });
  await resetCounters();
  const started = Date.now();
  assert.equal((await client.getSecret(name)).value, "v");
  assert.ok(Date.now() - started >= 900, `retried after ${Date.now() - started} ms`);
  assert.deepEqual((await counters()).get_secret, { 200: 1, 429: 1 });
});

test("a 503 and a dropped connection are retried by the SDK", async () => {
  const name = unique("flaky");
  await client.setSecret(name, "v");
  await admin("POST", "faults", { operation: "get_secret", status: 503, count: 1 });
  await resetCounters();
  assert.equal((await client.getSecret(name)).value, "v");
  assert.deepEqual((await counters()).get_secret, { 200: 1, 503: 1 });

  await admin("DELETE", "faults");
  await admin("POST", "faults", { operation: "get_secret", drop_connection: true, count: 1 });
  await resetCounters();
  assert.equal((await client.getSecret(name)).value, "v");
  assert.deepEqual((await counters()).get_secret, { 0: 1, 200: 1 });
});

test("a principal without a permission gets the service's 403 ForbiddenByPolicy", async () => {
  const name = unique("policy");
  await client.setSecret(name, "not for you");
  const principal = await admin("POST", "principals", { permissions: ["list", "set"] });
  const limited = new SecretClient(
    vaultUrl,
    credential(principal.client_id, principal.client_secret),
    { disableChallengeResourceVerification: true },
  );
  // What it may do, it can.
  const listed = [];
  for await (const p of limited.listPropertiesOfSecrets()) listed.push(p.name);
  assert.ok(listed.includes(name));
  await limited.setSecret(unique("allowed"), "v");
  const error = await rejection(limited.getSecret(name));
  assert.ok(isRestError(error));
  assert.equal(error.statusCode, 403);
  assert.equal(error.code, "Forbidden");
  assert.equal(error.details?.error?.innerError?.code, "ForbiddenByPolicy");
  assert.match(error.message, new RegExp(`appid=${principal.client_id}`));
  assert.match(error.message, /secrets get permission/);
});

test("a wrong client secret fails in ClientSecretCredential with the AADSTS error", async () => {
  const wrong = new SecretClient(vaultUrl, credential(undefined, "not-the-secret"), {
    disableChallengeResourceVerification: true,
  });
  const error = await rejection(wrong.getSecret(unique("any")));
  // @azure/identity wraps MSAL's ServerError (the token endpoint's JSON error) as it does AAD's.
  assert.equal(error.name, "AuthenticationRequiredError", `${error.name}: ${error.message}`);
  assert.match(error.message, /AADSTS7000215: Invalid client secret provided/);
  assert.equal(error.cause?.name, "ServerError");
  assert.equal(error.cause?.errorCode, "invalid_client");
  assert.equal(String(error.cause?.errorNo), "7000215");
  assert.equal(error.cause?.status, 401);
});

test("the service's 400s: an invalid name and a value over the limit", async () => {
  const invalid = await rejection(client.setSecret("not_valid", "v"));
  assert.ok(isRestError(invalid));
  assert.equal(invalid.statusCode, 400);
  assert.equal(invalid.code, "BadParameter");
  const large = await rejection(client.setSecret(unique("large"), "x".repeat(25_601)));
  assert.ok(isRestError(large));
  assert.equal(large.statusCode, 400);
  assert.equal(large.code, "BadParameter");
  assert.equal(large.details?.error?.innerError?.code, "SecretTooLarge");
  assert.equal(large.message, "Secret is beyond the maximum permitted length of 25600 characters.");
  // The largest value fits.
  const name = unique("largest");
  await client.setSecret(name, "x".repeat(25_600));
  assert.equal((await client.getSecret(name)).value.length, 25_600);
});

test("short list pages (as the service sometimes sends) still list everything", async () => {
  const prefix = unique("short");
  const names = [];
  for (let i = 0; i < 12; i++) {
    names.push(`${prefix}-${i}`);
    await client.setSecret(`${prefix}-${i}`, "v");
  }
  await admin("POST", "paging", { short_pages: true });
  const pages = [];
  for await (const page of client.listPropertiesOfSecrets().byPage({ maxPageSize: 4 })) {
    pages.push(page);
  }
  const listed = pages.flat().map((p) => p.name);
  assert.deepEqual(listed.filter((n) => n.startsWith(`${prefix}-`)).sort(), names.sort());
  assert.equal(new Set(listed).size, listed.length, "no secret listed twice");
  assert.ok(pages.some((page) => page.length < 4), "some page was short");
});
