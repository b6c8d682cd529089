// The certificates data plane through Microsoft's @azure/keyvault-certificates: import (PEM and a
// password-protected PFX, both made here with the openssl CLI), get (latest, by version), the
// policy the service derives, listing with paging, versions, update, the delete and recover
// pollers, purge, and the backing secret through SecretClient.
//
// Not tested, because the local vault answers them 501 NotImplemented (docs/LOCAL_VAULT.md):
// beginCreateCertificate, certificate operations, merge, policy updates, issuers, contacts and
// certificate backups.
//
// The SDK (4.10) sends neither `policy` nor `enabled` with importCertificate: it spreads its
// options into the request as `policy`, and its serializer reads `certificatePolicy` and
// `certificateAttributes`. A PEM import therefore reaches the vault without a content type, and
// the backing secret takes the default one; these tests check that the answers agree with each
// other rather than the SDK's dropped options.

import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import {
  assertServiceError,
  certificateClient,
  counters,
  rejection,
  resetCounters,
  resetVault,
  secretClient,
  unique,
  vaultUrl,
} from "./vault.js";

const certificates = certificateClient();
const secrets = secretClient();
const poll = { intervalInMs: 100 };
const PKCS12 = "application/x-pkcs12";
const PEM = "application/x-pem-file";

const work = mkdtempSync(join(tmpdir(), "akvfs-js-sdk-"));
after(() => rmSync(work, { recursive: true, force: true }));

function openssl(...args) {
  return execFileSync("openssl", args, { cwd: work, stdio: ["pipe", "pipe", "pipe"] });
}

/** A self-signed certificate for `cn` and its key, as PEM files in the work directory. */
function makeCertificate(cn, kind) {
  const key = join(work, `${cn}.key.pem`);
  const cert = join(work, `${cn}.cert.pem`);
  const newkey =
    kind === "rsa" ? ["-newkey", "rsa:2048"] : ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
  openssl(
    "req", "-x509", ...newkey, "-nodes", "-keyout", key, "-out", cert, "-days", "60",
    "-subj", `/CN=${cn}`, "-addext", `subjectAltName=DNS:${cn},DNS:www.${cn}`,
  );
  return { key, cert, x509: new X509Certificate(readFileSync(cert)) };
}

/** The certificates (and the key, when asked) of a backing secret's value, as PEM text. */
function secretContents(secret) {
  if (secret.properties.contentType === PEM) return secret.value;
  const pfx = join(work, `${secret.name}.pfx`);
  writeFileSync(pfx, Buffer.from(secret.value, "base64"));
  // The service writes the PFX again without a password.
  return openssl("pkcs12", "-in", pfx, "-passin", "pass:", "-nodes").toString("utf8");
}

function assertCertificateMatches(got, made) {
  assert.ok(got.cer instanceof Uint8Array);
  assert.deepEqual(Buffer.from(got.cer), made.x509.raw);
  const sha1 = createHash("sha1").update(made.x509.raw).digest();
  assert.deepEqual(Buffer.from(got.properties.x509Thumbprint), sha1);
  assert.equal(got.properties.x509ThumbprintString, sha1.toString("hex"));
  assert.deepEqual(got.properties.notBefore, new Date(made.x509.validFrom));
  assert.deepEqual(got.properties.expiresOn, new Date(made.x509.validTo));
}

test("importCertificate from PEM, then getCertificate, its policy and its backing secret", async () => {
  const name = unique("pem");
  const made = makeCertificate(`${name}.example`, "ec");
  const pem = Buffer.concat([readFileSync(made.key), readFileSync(made.cert)]);
  const imported = await certificates.importCertificate(name, pem, {
    policy: { contentType: PEM },
    tags: { origin: "js" },
  });
  assert.equal(imported.name, name);
  assert.match(imported.properties.version, /^[0-9a-f]{32}$/);
  assert.equal(imported.properties.enabled, true);
  assert.deepEqual(imported.properties.tags, { origin: "js" });
  assert.equal(imported.properties.recoveryLevel, "Recoverable+Purgeable");
  assertCertificateMatches(imported, made);

  const got = await certificates.getCertificate(name);
  assert.equal(got.properties.id, `${vaultUrl}/certificates/${name}/${imported.properties.version}`);
  assert.equal(got.keyId, `${vaultUrl}/keys/${name}/${imported.properties.version}`);
  assert.equal(got.secretId, `${vaultUrl}/secrets/${name}/${imported.properties.version}`);
  assertCertificateMatches(got, made);
  // The policy the service derives from an imported certificate.
  const policy = got.policy;
  assert.equal(policy.subject, `CN=${name}.example`);
  assert.deepEqual(policy.subjectAlternativeNames, {
    dnsNames: [`${name}.example`, `www.${name}.example`],
  });
  assert.equal(policy.keyType, "EC");
  assert.equal(policy.keyCurveName, "P-256");
  assert.equal(policy.exportable, true);
  assert.equal(policy.issuerName, "Unknown");
  assert.equal(policy.validityInMonths, 2);
  assert.ok([PKCS12, PEM].includes(policy.contentType), policy.contentType);
  assert.deepEqual(await certificates.getCertificatePolicy(name), policy);

  const byVersion = await certificates.getCertificateVersion(name, imported.properties.version);
  assert.equal(byVersion.properties.version, imported.properties.version);
  assertCertificateMatches(byVersion, made);

  // The backing secret: managed, in the policy's content type, the key and the certificate.
  const secret = await secrets.getSecret(name);
  assert.equal(secret.properties.managed, true);
  assert.equal(secret.properties.contentType, policy.contentType);
  assert.equal(secret.properties.version, imported.properties.version);
  assert.equal(secret.properties.certificateKeyId, got.keyId);
  const contents = secretContents(secret);
  assert.match(contents, /-----BEGIN PRIVATE KEY-----/);
  const leaf = contents.slice(contents.indexOf("-----BEGIN CERTIFICATE-----"));
  assert.deepEqual(new X509Certificate(leaf).raw, made.x509.raw);
  // By its version too.
  const byId = await secrets.getSecret(name, { version: imported.properties.version });
  assert.equal(byId.value, secret.value);
});

test("importCertificate from a password-protected PFX: a new version, a PKCS#12 secret without it", async () => {
  const name = unique("pfx");
  const first = makeCertificate(`${name}.example`, "rsa");
  const second = makeCertificate(`v2.${name}.example`, "rsa");
  const pfx = (made, password) => {
    const path = join(work, `${made.x509.serialNumber}.pfx`);
    openssl(
      "pkcs12", "-export", "-inkey", made.key, "-in", made.cert, "-out", path,
      "-passout", `pass:${password}`,
    );
    return readFileSync(path);
  };
  const v1 = await certificates.importCertificate(name, pfx(first, "pw one"), {
    password: "pw one",
  });
  const v2 = await certificates.importCertificate(name, pfx(second, "pw two"), {
    password: "pw two",
  });
  assert.notEqual(v1.properties.version, v2.properties.version);
  assertCertificateMatches(v2, second);
  assert.equal(v2.policy.keyType, "RSA");
  assert.equal(v2.policy.keySize, 2048);
  assert.equal(v2.policy.contentType, PKCS12);
  assertCertificateMatches(await certificates.getCertificate(name), second);
  assertCertificateMatches(
    await certificates.getCertificateVersion(name, v1.properties.version),
    first,
  );

  const versions = [];
  for await (const properties of certificates.listPropertiesOfCertificateVersions(name)) {
    assert.equal(properties.name, name);
    versions.push(properties.version);
  }
  assert.deepEqual(versions.sort(), [v1.properties.version, v2.properties.version].sort());

  const secret = await secrets.getSecret(name);
  assert.equal(secret.properties.contentType, PKCS12);
  assert.equal(secret.properties.managed, true);
  const contents = secretContents(secret);
  const leaf = contents.slice(contents.indexOf("-----BEGIN CERTIFICATE-----"));
  assert.deepEqual(new X509Certificate(leaf).raw, second.x509.raw);
  const old = await secrets.getSecret(name, { version: v1.properties.version });
  const oldContents = secretContents(old);
  const oldLeaf = oldContents.slice(oldContents.indexOf("-----BEGIN CERTIFICATE-----"));
  assert.deepEqual(new X509Certificate(oldLeaf).raw, first.x509.raw);

  // A wrong password is the service's 400.
  const wrong = await rejection(
    certificates.importCertificate(name, pfx(first, "right"), { password: "wrong" }),
  );
  assertServiceError(wrong, 400, "BadParameter");
});

test("listPropertiesOfCertificates follows nextLink over pages of 25; secrets list them as managed", async () => {
  // An empty vault, so the page count is exactly ours. (The SDK sends no page size for
  // certificates: byPage ignores maxPageSize, so the vault's 25 a page decides.)
  await resetVault();
  const made = makeCertificate("listed.example", "ec");
  const pem = Buffer.concat([readFileSync(made.key), readFileSync(made.cert)]);
  const names = Array.from({ length: 27 }, (_, i) => `listed-${String(i).padStart(2, "0")}`);
  for (const name of names) {
    await certificates.importCertificate(name, pem, { policy: { contentType: PEM } });
  }
  await resetCounters();
  const pages = [];
  for await (const page of certificates.listPropertiesOfCertificates().byPage()) {
    pages.push(page);
  }
  assert.deepEqual(
    pages.map((page) => page.length),
    [25, 2],
  );
  assert.deepEqual((await counters()).list_certificates, { 200: 2 });
  const listed = pages.flat();
  assert.deepEqual(listed.map((p) => p.name).sort(), names);
  for (const properties of listed) {
    assert.equal(properties.id, `${vaultUrl}/certificates/${properties.name}`);
    assert.equal(properties.enabled, true);
    assert.deepEqual(Buffer.from(properties.x509Thumbprint), createHash("sha1").update(made.x509.raw).digest());
  }
  // includePending (no certificate is pending here: imports complete at once).
  const withPending = [];
  for await (const p of certificates.listPropertiesOfCertificates({ includePending: true })) {
    withPending.push(p.name);
  }
  assert.deepEqual(withPending.sort(), names);

  const secretsListed = new Map();
  for await (const properties of secrets.listPropertiesOfSecrets()) {
    secretsListed.set(properties.name, properties);
  }
  assert.deepEqual([...secretsListed.keys()].sort(), names);
  for (const properties of secretsListed.values()) {
    assert.equal(properties.managed, true);
    assert.ok([PKCS12, PEM].includes(properties.contentType), properties.contentType);
  }
});

test("updateCertificateProperties; disabled, its backing secret is SecretDisabled", async () => {
  const name = unique("update");
  const made = makeCertificate(`${name}.example`, "ec");
  const imported = await certificates.importCertificate(
    name,
    Buffer.concat([readFileSync(made.key), readFileSync(made.cert)]),
    { policy: { contentType: PEM } },
  );
  const updated = await certificates.updateCertificateProperties(name, "", {
    tags: { stage: "two" },
  });
  assert.deepEqual(updated.properties.tags, { stage: "two" });
  assert.equal(updated.properties.version, imported.properties.version);
  assert.deepEqual((await secrets.getSecret(name)).properties.tags, { stage: "two" });

  const disabled = await certificates.updateCertificateProperties(
    name,
    imported.properties.version,
    { enabled: false },
  );
  assert.equal(disabled.properties.enabled, false);
  const error = await rejection(secrets.getSecret(name));
  assertServiceError(error, 403, "Forbidden");
  assert.equal(error.details?.error?.innerError?.code, "SecretDisabled");
});

test("delete poller, deleted certificate, recover poller, purge; 404 CertificateNotFound", async () => {
  const name = unique("lifecycle");
  const made = makeCertificate(`${name}.example`, "ec");
  await certificates.importCertificate(
    name,
    Buffer.concat([readFileSync(made.key), readFileSync(made.cert)]),
    { policy: { contentType: PEM } },
  );
  const deleted = await (await certificates.beginDeleteCertificate(name, poll)).pollUntilDone();
  assert.equal(deleted.name, name);
  assert.equal(deleted.recoveryId, `${vaultUrl}/deletedcertificates/${name}`);
  assert.ok(deleted.deletedOn instanceof Date);
  assertServiceError(await rejection(certificates.getCertificate(name)), 404, "CertificateNotFound");
  // The backing secret went with it.
  assertServiceError(await rejection(secrets.getSecret(name)), 404, "SecretNotFound");
  const got = await certificates.getDeletedCertificate(name);
  assert.equal(got.name, name);
  assert.deepEqual(Buffer.from(got.cer), made.x509.raw);
  const listed = [];
  for await (const d of certificates.listDeletedCertificates()) listed.push(d.name);
  assert.ok(listed.includes(name));

  const recovered = await (
    await certificates.beginRecoverDeletedCertificate(name, poll)
  ).pollUntilDone();
  assert.equal(recovered.name, name);
  assertCertificateMatches(await certificates.getCertificate(name), made);
  assert.equal((await secrets.getSecret(name)).properties.managed, true);

  await (await certificates.beginDeleteCertificate(name, poll)).pollUntilDone();
  await certificates.purgeDeletedCertificate(name);
  assertServiceError(
    await rejection(certificates.getDeletedCertificate(name)),
    404,
    "CertificateNotFound",
  );
  const missing = await rejection(certificates.getCertificate(unique("never")));
  assertServiceError(missing, 404, "CertificateNotFound");
});
