// Shared helpers of the JavaScript SDK suite: the local vault's env file (named by
// AKVFS_LOCAL_VAULT_ENV, as tests/sdk/conftest.py reads it), SDK clients authenticating with
// ClientSecretCredential at the vault's own authority, and a small client of the vault's
// `/_akvfs/` admin endpoints (reset, counters). tests/local_vault_js_sdk.rs starts the vault and
// sets NODE_EXTRA_CA_CERTS to its CA; by hand:
//   NODE_EXTRA_CA_CERTS=DIR/ca.pem AKVFS_LOCAL_VAULT_ENV=DIR/env node --test tests/sdk-js/

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import https from "node:https";

import { ClientSecretCredential } from "@azure/identity";
import { isRestError, SecretClient } from "@azure/keyvault-secrets";
import { CertificateClient } from "@azure/keyvault-certificates";

/** The `export NAME=value` lines of an env file (values single-quoted when they need it). */
export function parseEnvFile(path) {
  const variables = {};
  for (let line of readFileSync(path, "utf8").split("\n")) {
    line = line.trim();
    if (!line || line.startsWith("#")) continue;
    if (line.startsWith("export ")) line = line.slice("export ".length);
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const name = line.slice(0, eq);
    let raw = line.slice(eq + 1);
    let value = "";
    // POSIX single quotes, with '\'' for a quote inside.
    while (raw.length > 0) {
      if (raw.startsWith("'")) {
        const end = raw.indexOf("'", 1);
        if (end < 0) throw new Error(`unterminated quote in ${path} for ${name}`);
        value += raw.slice(1, end);
        raw = raw.slice(end + 1);
      } else if (raw.startsWith("\\")) {
        value += raw.slice(1, 2);
        raw = raw.slice(2);
      } else {
        const next = raw.search(/['\\]/);
        const stop = next < 0 ? raw.length : next;
        value += raw.slice(0, stop);
        raw = raw.slice(stop);
      }
    }
    variables[name] = value;
  }
  return variables;
}

/** The variables of the env file named by the environment variable `variable`. */
export function loadEnv(variable = "AKVFS_LOCAL_VAULT_ENV") {
  const path = process.env[variable];
  if (!path) {
    throw new Error(`${variable} must name a local vault's env file`);
  }
  const variables = parseEnvFile(path);
  for (const name of [
    "AKVFS_VAULT_URL",
    "AKVFS_CA_FILE",
    "AKVFS_TENANT_ID",
    "AKVFS_CLIENT_ID",
    "AKVFS_CLIENT_SECRET",
    "AKVFS_AUTHORITY_HOST",
    "AKVFS_ADMIN_TOKEN",
  ]) {
    if (!variables[name]) throw new Error(`${path} lacks ${name}`);
  }
  // Node reads NODE_EXTRA_CA_CERTS once, at start: the SDK's HTTPS agent trusts the vault's CA
  // only through it (a bundle of several vaults' CAs will do).
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  const ca = readFileSync(variables.AKVFS_CA_FILE, "utf8").trim();
  if (!extra || !readFileSync(extra, "utf8").includes(ca)) {
    throw new Error(
      `NODE_EXTRA_CA_CERTS (${extra}) must hold the vault's CA (${variables.AKVFS_CA_FILE})`,
    );
  }
  return variables;
}

export const env = loadEnv();
export const vaultUrl = env.AKVFS_VAULT_URL;

/** A credential for the vault's default principal, from its own token endpoint. */
export function credential(
  clientId = env.AKVFS_CLIENT_ID,
  clientSecret = env.AKVFS_CLIENT_SECRET,
  variables = env,
) {
  return new ClientSecretCredential(variables.AKVFS_TENANT_ID, clientId, clientSecret, {
    authorityHost: variables.AKVFS_AUTHORITY_HOST,
    // MSAL would otherwise ask login.microsoftonline.com whether the authority is a known one.
    disableInstanceDiscovery: true,
  });
}

const sharedCredential = credential();

// The challenge names `https://127.0.0.1:PORT`; the SDK accepts only a resource whose host is a
// parent domain of the vault's (`.vault.azure.net`), which an IP address cannot have (the Python
// suite turns the same check off).
const clientOptions = { disableChallengeResourceVerification: true };

/** The SDK's defaults otherwise (retries, api-version, pollers). */
export function secretClient(options = {}) {
  return new SecretClient(vaultUrl, sharedCredential, { ...clientOptions, ...options });
}

export function certificateClient(options = {}) {
  return new CertificateClient(vaultUrl, sharedCredential, { ...clientOptions, ...options });
}

/** A fresh name: `prefix-` and 8 hex digits. */
export function unique(prefix) {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

const ca = readFileSync(env.AKVFS_CA_FILE);

/** One call to the vault's `/_akvfs/` admin endpoints (see src/local_vault/admin.rs). */
export function admin(method, path, body) {
  const url = new URL(`_akvfs/${path}`, vaultUrl.endsWith("/") ? vaultUrl : `${vaultUrl}/`);
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const request = https.request(
      url,
      {
        method,
        ca,
        headers: {
          Authorization: `Bearer ${env.AKVFS_ADMIN_TOKEN}`,
          ...(data ? { "Content-Type": "application/json", "Content-Length": data.length } : {}),
        },
        timeout: 30_000,
      },
      (response) => {
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (response.statusCode >= 300) {
            reject(new Error(`admin ${method} ${path}: ${response.statusCode} ${text}`));
          } else {
            resolve(text ? JSON.parse(text) : {});
          }
        });
      },
    );
    request.on("error", reject);
    request.on("timeout", () => request.destroy(new Error(`admin ${method} ${path} timed out`)));
    request.end(data);
  });
}

/** operation -> { status: count } since the last reset. */
export async function counters() {
  return (await admin("GET", "counters")).operations;
}

export const resetCounters = () => admin("POST", "counters/reset");

/** Wipes every secret and certificate, live and deleted. */
export const resetVault = () => admin("POST", "reset");

/** The error a promise rejects with (fails when it resolves). */
export async function rejection(promise) {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to fail, it succeeded");
}

/**
 * Asserts `error` is the SDK's RestError for the service's error body: its status and code, and,
 * when `innerCode` is given (even as undefined), the body's inner error code.
 */
export function assertServiceError(error, statusCode, code, ...innerCode) {
  assert.ok(isRestError(error), `not a RestError: ${error}`);
  assert.equal(error.statusCode, statusCode, error.message);
  assert.equal(error.code, code, error.message);
  assert.equal(error.details?.error?.code, code);
  if (innerCode.length > 0) {
    assert.equal(error.details?.error?.innerError?.code, innerCode[0]);
  }
}
