//! The vault's state in SQLite: secrets (one row per name, keyed by the case-folded name), their
//! versions, soft-deleted secrets, principals and server metadata.
//!
//! Durability: WAL with `synchronous=FULL`, so a change acknowledged to a client survives `kill -9`
//! (and power loss). Calls are synchronous; the HTTP layer runs them on tokio's blocking pool.
//!
//! A name's life: absent → live → (delete) being deleted → deleted → (recover) being recovered →
//! live, or (purge / schedule expiry) absent. The "being" states last until `ready_at` on the
//! vault clock, which is how deletion and recovery complete asynchronously as in the service.
//! Expired deleted secrets are purged lazily, whenever an operation might see them.
//!
//! Names: the key is the lower-cased name; the display name is the spelling of the first set.
//! A later set with another spelling adds a version to the same secret and keeps the first
//! spelling (ids and listings keep showing it), like a case-insensitive file system keeps a
//! file's name when it is written through another spelling.
//!
//! Certificates (`certificates`): a certificate is a name of the `secrets` table with a row in
//! `certificates` (its policy) and one in `certificate_versions` per version (the leaf's DER);
//! the version's secret value is the backing secret (PFX or PEM), its attributes and tags are
//! the certificate's. So a certificate and its backing secret share one life (delete, recover,
//! purge) and one version id, as in the service, and the secrets API refuses to change it.

use std::path::Path;

use axum::http::StatusCode;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, Kind};

mod certificates;
use crate::secret_value::SecretValue;
use crate::vault::model::Tags;
pub use certificates::{CertificateRecord, DeletedCertificateRecord, NewCertificate};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS principals(
    client_id TEXT PRIMARY KEY, secret TEXT NOT NULL, permissions TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets(
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('live', 'deleted')),
    ready_at INTEGER NOT NULL,
    deleted_date INTEGER,
    scheduled_purge INTEGER,
    next_seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS versions(
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    seq INTEGER NOT NULL,
    value TEXT NOT NULL,
    content_type TEXT,
    tags TEXT,
    enabled INTEGER NOT NULL,
    nbf INTEGER,
    exp INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (key, version));
CREATE INDEX IF NOT EXISTS versions_by_seq ON versions(key, seq);
CREATE INDEX IF NOT EXISTS secrets_by_state ON secrets(state, key);
-- Most transactions sweep the deleted secrets due for purge: without this index each sweep
-- scans every deleted secret, and a vault that has seen many deletions slows down.
CREATE INDEX IF NOT EXISTS secrets_by_purge ON secrets(state, scheduled_purge);
CREATE TABLE IF NOT EXISTS certificates(key TEXT PRIMARY KEY, policy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS certificate_versions(
    key TEXT NOT NULL,
    version TEXT NOT NULL,
    cer BLOB NOT NULL,
    PRIMARY KEY (key, version));
";

/// One stored version of a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: String,
    pub value: SecretValue,
    pub content_type: Option<String>,
    pub tags: Option<Tags>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

/// A secret as the vault shows it: display name and one version (the latest or the asked one).
#[derive(Clone, Debug)]
pub struct SecretRecord {
    pub name: String,
    pub version: VersionRecord,
    /// The secret backs a certificate (`managed: true`, with a `kid`).
    pub managed: bool,
}

#[derive(Clone, Debug)]
pub struct DeletedRecord {
    pub name: String,
    pub version: VersionRecord,
    pub deleted_date: i64,
    pub scheduled_purge: i64,
}

/// What a set writes (already validated by the HTTP layer).
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub value: SecretValue,
    pub content_type: Option<String>,
    pub tags: Option<Tags>,
    pub enabled: bool,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// What an update changes; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct VersionUpdate {
    pub content_type: Option<String>,
    pub tags: Option<Tags>,
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

/// The payload of a backup blob (all versions of one secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackupData {
    pub name: String,
    pub versions: Vec<VersionRecord>,
}

#[derive(Clone, Debug)]
pub struct PrincipalRecord {
    pub client_id: String,
    pub secret: SecretValue,
    pub permissions: Vec<String>,
}

/// Vault-wide timing of soft delete, passed in by the caller (it owns the clock).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub ms: i64,
}

impl Now {
    pub fn secs(self) -> i64 {
        self.ms.div_euclid(1000)
    }
}

/// The columns `row_to_version` reads, in its order (a macro so queries are `concat!`-ed
/// constants that SQLite's statement cache can keep).
macro_rules! version_cols {
    () => {
        "version, value, content_type, enabled, tags, nbf, exp, created, updated"
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Live { ready: bool },
    Deleted { ready: bool },
}

pub struct Store {
    conn: Mutex<Connection>,
}

fn db_err(e: rusqlite::Error) -> ApiError {
    tracing::error!(error = %e, "local vault database error");
    ApiError::internal("The local vault's database failed; see the server log.")
}

/// Rows were fetched with `LIMIT limit + 1`: when the extra row is there, more follow, and the
/// next page continues after the last row of this one.
fn continuation<T>(rows: &[T], limit: usize, key: impl Fn(&T) -> String) -> Option<String> {
    if rows.len() > limit {
        rows.get(limit.checked_sub(1)?).map(key)
    } else {
        None
    }
}

/// Tags as stored: JSON text, `NULL` when absent (a string map always serializes).
fn tags_json(tags: Option<&Tags>) -> Option<String> {
    tags.and_then(|t| serde_json::to_string(t).ok())
}

pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn new_version_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Store {
    /// Opens (creating) the database at `path`, or an in-memory one.
    pub fn open(path: Option<&Path>) -> Result<Store, rusqlite::Error> {
        let conn = match path {
            Some(path) => {
                let conn = Connection::open(path)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "FULL")?;
                conn
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    // ---- metadata and principals -------------------------------------------------------------

    pub fn meta(&self, key: &str) -> Result<Option<String>, rusqlite::Error> {
        self.conn
            .lock()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    /// The stored value of `key`, or `make()` stored now.
    pub fn meta_or_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> Result<String, rusqlite::Error> {
        if let Some(v) = self.meta(key)? {
            return Ok(v);
        }
        let value = make();
        self.conn.lock().execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(self.meta(key)?.unwrap_or(value))
    }

    pub fn add_principal(&self, p: &PrincipalRecord) -> Result<(), rusqlite::Error> {
        self.conn.lock().execute(
            "INSERT OR REPLACE INTO principals(client_id, secret, permissions) VALUES (?1, ?2, ?3)",
            params![p.client_id, p.secret.expose(), p.permissions.join(",")],
        )?;
        Ok(())
    }

    pub fn principals(&self) -> Result<Vec<PrincipalRecord>, rusqlite::Error> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT client_id, secret, permissions FROM principals")?;
        let rows = stmt.query_map([], |r| {
            let perms: String = r.get(2)?;
            Ok(PrincipalRecord {
                client_id: r.get(0)?,
                secret: SecretValue::new(r.get(1)?),
                permissions: perms
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            })
        })?;
        rows.collect()
    }

    // ---- helpers ------------------------------------------------------------------------------

    fn sweep_expired(tx: &Transaction<'_>, now: Now) -> Result<(), rusqlite::Error> {
        for table in ["certificate_versions", "certificates"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE key IN (SELECT key FROM secrets \
                     WHERE state = 'deleted' AND scheduled_purge <= ?1)"
                ),
                [now.secs()],
            )?;
        }
        tx.execute(
            "DELETE FROM versions WHERE key IN (SELECT key FROM secrets \
             WHERE state = 'deleted' AND scheduled_purge <= ?1)",
            [now.secs()],
        )?;
        tx.execute(
            "DELETE FROM secrets WHERE state = 'deleted' AND scheduled_purge <= ?1",
            [now.secs()],
        )?;
        Ok(())
    }

    fn state(
        tx: &Connection,
        key: &str,
        now: Now,
    ) -> Result<Option<(String, State)>, rusqlite::Error> {
        tx.prepare_cached("SELECT name, state, ready_at FROM secrets WHERE key = ?1")?
            .query_row([key], |r| {
                let name: String = r.get(0)?;
                let state: String = r.get(1)?;
                let ready_at: i64 = r.get(2)?;
                let ready = ready_at <= now.ms;
                Ok((
                    name,
                    if state == "live" {
                        State::Live { ready }
                    } else {
                        State::Deleted { ready }
                    },
                ))
            })
            .optional()
    }

    fn row_to_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<VersionRecord> {
        let tags: Option<String> = r.get(4)?;
        Ok(VersionRecord {
            version: r.get(0)?,
            value: SecretValue::new(r.get(1)?),
            content_type: r.get(2)?,
            enabled: r.get::<_, i64>(3)? != 0,
            // Tags were serialized by us; unreadable ones read as absent rather than failing.
            tags: tags.and_then(|t| serde_json::from_str(&t).ok()),
            nbf: r.get(5)?,
            exp: r.get(6)?,
            created: r.get(7)?,
            updated: r.get(8)?,
        })
    }

    fn latest(conn: &Connection, key: &str) -> Result<Option<VersionRecord>, rusqlite::Error> {
        conn.prepare_cached(concat!(
            "SELECT ",
            version_cols!(),
            " FROM versions WHERE key = ?1 ORDER BY seq DESC LIMIT 1"
        ))?
        .query_row([key], Self::row_to_version)
        .optional()
    }

    fn one_version(
        conn: &Connection,
        key: &str,
        version: &str,
    ) -> Result<Option<VersionRecord>, rusqlite::Error> {
        conn.prepare_cached(concat!(
            "SELECT ",
            version_cols!(),
            " FROM versions WHERE key = ?1 AND version = ?2"
        ))?
        .query_row(params![key, version], Self::row_to_version)
        .optional()
    }

    fn insert_version(
        tx: &Connection,
        key: &str,
        seq: i64,
        v: &VersionRecord,
    ) -> Result<(), rusqlite::Error> {
        let tags = tags_json(v.tags.as_ref());
        tx.execute(
            "INSERT INTO versions(key, version, seq, value, content_type, tags, enabled, nbf, exp, \
             created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                key,
                v.version,
                seq,
                v.value.expose(),
                v.content_type,
                tags,
                v.enabled as i64,
                v.nbf,
                v.exp,
                v.created,
                v.updated
            ],
        )?;
        Ok(())
    }

    // ---- operations ---------------------------------------------------------------------------

    /// `PUT /secrets/{name}`: a new version.
    pub fn set(&self, name: &str, new: NewVersion, now: Now) -> Result<SecretRecord, ApiError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        let record = Self::set_in(&tx, name, new, now)?;
        tx.commit().map_err(db_err)?;
        Ok(record)
    }

    /// Sets many secrets in one transaction (one fsync): the admin seeding of benchmarks.
    /// All or nothing.
    pub fn set_many(
        &self,
        items: impl IntoIterator<Item = (String, NewVersion)>,
        now: Now,
    ) -> Result<usize, ApiError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        let mut count = 0;
        for (name, new) in items {
            Self::set_in(&tx, &name, new, now)?;
            count += 1;
        }
        tx.commit().map_err(db_err)?;
        Ok(count)
    }

    fn set_in(
        tx: &Transaction<'_>,
        name: &str,
        new: NewVersion,
        now: Now,
    ) -> Result<SecretRecord, ApiError> {
        let (key, display) = Self::writable(tx, name, now, Kind::Secret)?;
        let version = Self::add_version(tx, &key, new, now)?;
        Ok(SecretRecord {
            name: display,
            version,
            managed: false,
        })
    }

    /// Whether the folded name is a certificate's (its secret is managed).
    fn is_certificate(conn: &Connection, key: &str) -> Result<bool, ApiError> {
        conn.prepare_cached("SELECT 1 FROM certificates WHERE key = ?1")
            .and_then(|mut stmt| stmt.exists([key]))
            .map_err(db_err)
    }

    /// The folded key and display name a new version of `kind` goes to, creating the name when
    /// it is new; the service's 409s while it is deleted or on its way, and a refusal when the
    /// name holds the other kind (a secret set on a certificate's secret, or an import over a
    /// plain secret).
    fn writable(
        tx: &Transaction<'_>,
        name: &str,
        now: Now,
        kind: Kind,
    ) -> Result<(String, String), ApiError> {
        let key = fold(name);
        let display = match Self::state(tx, &key, now).map_err(db_err)? {
            None => {
                tx.execute(
                    "INSERT INTO secrets(key, name, state, ready_at, next_seq) \
                     VALUES (?1, ?2, 'live', 0, 0)",
                    params![key, name],
                )
                .map_err(db_err)?;
                return Ok((key, name.to_owned()));
            }
            Some((display, State::Live { ready: true })) => display,
            Some((display, State::Live { ready: false })) => {
                return Err(ApiError::being_recovered_of(kind, &display))
            }
            Some((display, State::Deleted { ready: false })) => {
                return Err(ApiError::being_deleted_of(kind, &display))
            }
            Some((display, State::Deleted { ready: true })) => {
                return Err(ApiError::deleted_but_recoverable_of(kind, &display))
            }
        };
        match (kind, Self::is_certificate(tx, &key)?) {
            (Kind::Secret, true) => Err(ApiError::managed_secret("set")),
            (Kind::Certificate, false) => Err(ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "A secret with the name {display} already exists; a certificate cannot take \
                     the name of a secret."
                ),
            )),
            _ => Ok((key, display)),
        }
    }

    /// Appends a version to a writable name (see [`Store::writable`]).
    fn add_version(
        tx: &Transaction<'_>,
        key: &str,
        new: NewVersion,
        now: Now,
    ) -> Result<VersionRecord, ApiError> {
        let seq: i64 = tx
            .query_row(
                "UPDATE secrets SET next_seq = next_seq + 1 WHERE key = ?1 RETURNING next_seq",
                [key],
                |r| r.get(0),
            )
            .map_err(db_err)?;
        let record = VersionRecord {
            version: new_version_id(),
            value: new.value,
            content_type: new.content_type,
            tags: new.tags,
            enabled: new.enabled,
            nbf: new.nbf,
            exp: new.exp,
            created: now.secs(),
            updated: now.secs(),
        };
        Self::insert_version(tx, key, seq, &record).map_err(db_err)?;
        Ok(record)
    }

    /// A live, visible name's display spelling and whether it is a certificate's, or the
    /// service's 404 for `kind` (a plain secret is no certificate; a certificate's secret is a
    /// secret).
    fn live_name(
        conn: &Connection,
        name: &str,
        now: Now,
        kind: Kind,
    ) -> Result<(String, bool), ApiError> {
        let key = fold(name);
        match Self::state(conn, &key, now).map_err(db_err)? {
            Some((display, State::Live { ready: true })) => {
                let managed = Self::is_certificate(conn, &key)?;
                if kind == Kind::Certificate && !managed {
                    return Err(ApiError::not_found(kind, name));
                }
                Ok((display, managed))
            }
            _ => Err(ApiError::not_found(kind, name)),
        }
    }

    /// One version (`None` = the latest) of a live name, or the 404s of `kind`.
    fn version_of(
        conn: &Connection,
        name: &str,
        version: Option<&str>,
        kind: Kind,
    ) -> Result<VersionRecord, ApiError> {
        let key = fold(name);
        let record = match version {
            None => Self::latest(conn, &key).map_err(db_err)?,
            Some(v) => Self::one_version(conn, &key, v).map_err(db_err)?,
        };
        match (record, version) {
            (Some(v), _) => Ok(v),
            (None, Some(v)) => Err(ApiError::not_found(kind, &format!("{name}/{v}"))),
            (None, None) => Err(ApiError::not_found(kind, name)),
        }
    }

    /// `GET /secrets/{name}[/{version}]` (also used by update and backup).
    pub fn get(
        &self,
        name: &str,
        version: Option<&str>,
        now: Now,
    ) -> Result<SecretRecord, ApiError> {
        self.get_of(name, version, now, Kind::Secret)
    }

    fn get_of(
        &self,
        name: &str,
        version: Option<&str>,
        now: Now,
        kind: Kind,
    ) -> Result<SecretRecord, ApiError> {
        let conn = self.conn.lock();
        let (display, managed) = Self::live_name(&conn, name, now, kind)?;
        let version = Self::version_of(&conn, name, version, kind)?;
        Ok(SecretRecord {
            name: display,
            version,
            managed,
        })
    }

    /// `PATCH /secrets/{name}/{version}`: changes attributes, no new version.
    pub fn update(
        &self,
        name: &str,
        version: Option<&str>,
        change: VersionUpdate,
        now: Now,
    ) -> Result<SecretRecord, ApiError> {
        self.update_of(name, version, change, now, Kind::Secret)
    }

    fn update_of(
        &self,
        name: &str,
        version: Option<&str>,
        change: VersionUpdate,
        now: Now,
        kind: Kind,
    ) -> Result<SecretRecord, ApiError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        let (display, managed) = Self::live_name(&tx, name, now, kind)?;
        if kind == Kind::Secret && managed {
            return Err(ApiError::managed_secret("update"));
        }
        let key = fold(name);
        let mut v = Self::version_of(&tx, name, version, kind)?;
        if let Some(ct) = change.content_type {
            v.content_type = Some(ct);
        }
        // The service answers an update with `tags` always present (`{}` when there are none).
        v.tags = Some(change.tags.or(v.tags.take()).unwrap_or_default());
        if let Some(enabled) = change.enabled {
            v.enabled = enabled;
        }
        if change.nbf.is_some() {
            v.nbf = change.nbf;
        }
        if change.exp.is_some() {
            v.exp = change.exp;
        }
        v.updated = now.secs();
        let tags = tags_json(v.tags.as_ref());
        tx.execute(
            "UPDATE versions SET content_type = ?3, tags = ?4, enabled = ?5, nbf = ?6, exp = ?7, \
             updated = ?8 WHERE key = ?1 AND version = ?2",
            params![
                key,
                v.version,
                v.content_type,
                tags,
                v.enabled as i64,
                v.nbf,
                v.exp,
                v.updated
            ],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(SecretRecord {
            name: display,
            version: v,
            managed,
        })
    }

    /// `DELETE /secrets/{name}`. With soft delete the secret moves to the deleted state, visible
    /// there from `now + delay_ms`; without, it is gone at once.
    pub fn delete(
        &self,
        name: &str,
        soft: Option<(i64, i64)>, // (delay_ms, recoverable_days)
        now: Now,
    ) -> Result<DeletedRecord, ApiError> {
        self.delete_of(name, soft, now, Kind::Secret)
    }

    fn delete_of(
        &self,
        name: &str,
        soft: Option<(i64, i64)>,
        now: Now,
        kind: Kind,
    ) -> Result<DeletedRecord, ApiError> {
        let key = fold(name);
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        let (display, managed) = Self::live_name(&tx, name, now, kind)?;
        if kind == Kind::Secret && managed {
            return Err(ApiError::managed_secret("delete"));
        }
        let latest = Self::latest(&tx, &key)
            .map_err(db_err)?
            .ok_or_else(|| ApiError::not_found(kind, name))?;
        let record = match soft {
            Some((delay_ms, days)) => {
                let scheduled = now.secs() + days * 86_400;
                tx.execute(
                    "UPDATE secrets SET state = 'deleted', ready_at = ?2, deleted_date = ?3, \
                     scheduled_purge = ?4 WHERE key = ?1",
                    params![key, now.ms + delay_ms, now.secs(), scheduled],
                )
                .map_err(db_err)?;
                DeletedRecord {
                    name: display,
                    version: latest,
                    deleted_date: now.secs(),
                    scheduled_purge: scheduled,
                }
            }
            None => {
                Self::remove(&tx, &key).map_err(db_err)?;
                DeletedRecord {
                    name: display,
                    version: latest,
                    deleted_date: now.secs(),
                    scheduled_purge: now.secs(),
                }
            }
        };
        tx.commit().map_err(db_err)?;
        Ok(record)
    }

    fn remove(tx: &Connection, key: &str) -> Result<(), rusqlite::Error> {
        tx.execute("DELETE FROM versions WHERE key = ?1", [key])?;
        tx.execute("DELETE FROM secrets WHERE key = ?1", [key])?;
        tx.execute("DELETE FROM certificate_versions WHERE key = ?1", [key])?;
        tx.execute("DELETE FROM certificates WHERE key = ?1", [key])?;
        Ok(())
    }

    /// A completed deletion of `kind`: a deleted certificate is no deleted secret (the
    /// `deletedsecrets` calls do not see it) and a deleted secret no deleted certificate.
    fn deleted_record(
        conn: &Connection,
        name: &str,
        now: Now,
        kind: Kind,
    ) -> Result<DeletedRecord, ApiError> {
        let key = fold(name);
        let row: Option<(String, i64, i64, i64)> = conn
            .query_row(
                "SELECT name, ready_at, deleted_date, scheduled_purge FROM secrets \
                 WHERE key = ?1 AND state = 'deleted'",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(db_err)?;
        let of_kind = (kind == Kind::Certificate) == Self::is_certificate(conn, &key)?;
        match row {
            Some((display, ready_at, deleted_date, scheduled_purge))
                if ready_at <= now.ms && of_kind =>
            {
                let version = Self::latest(conn, &key)
                    .map_err(db_err)?
                    .ok_or_else(|| ApiError::deleted_not_found_of(kind, name))?;
                Ok(DeletedRecord {
                    name: display,
                    version,
                    deleted_date,
                    scheduled_purge,
                })
            }
            _ => Err(ApiError::deleted_not_found_of(kind, name)),
        }
    }

    /// `GET /deletedsecrets/{name}`: 404 until the deletion has completed.
    pub fn get_deleted(&self, name: &str, now: Now) -> Result<DeletedRecord, ApiError> {
        self.get_deleted_of(name, now, Kind::Secret)
    }

    fn get_deleted_of(&self, name: &str, now: Now, kind: Kind) -> Result<DeletedRecord, ApiError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        let record = Self::deleted_record(&tx, name, now, kind)?;
        tx.commit().map_err(db_err)?;
        Ok(record)
    }

    /// `DELETE /deletedsecrets/{name}`: gone for good.
    pub fn purge(&self, name: &str, now: Now) -> Result<(), ApiError> {
        self.purge_of(name, now, Kind::Secret)
    }

    fn purge_of(&self, name: &str, now: Now, kind: Kind) -> Result<(), ApiError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        Self::deleted_record(&tx, name, now, kind)?;
        Self::remove(&tx, &fold(name)).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(())
    }

    /// `POST /deletedsecrets/{name}/recover`: live again from `now + delay_ms`.
    pub fn recover(&self, name: &str, delay_ms: i64, now: Now) -> Result<SecretRecord, ApiError> {
        self.recover_of(name, delay_ms, now, Kind::Secret)
    }

    fn recover_of(
        &self,
        name: &str,
        delay_ms: i64,
        now: Now,
        kind: Kind,
    ) -> Result<SecretRecord, ApiError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        let record = Self::deleted_record(&tx, name, now, kind)?;
        tx.execute(
            "UPDATE secrets SET state = 'live', ready_at = ?2, deleted_date = NULL, \
             scheduled_purge = NULL WHERE key = ?1",
            params![fold(name), now.ms + delay_ms],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(SecretRecord {
            name: record.name,
            version: record.version,
            managed: kind == Kind::Certificate,
        })
    }

    /// `GET /secrets`: live secrets after `after` (a folded key), sorted case-insensitively,
    /// certificates' secrets included (`managed`). Returns up to `limit`, and the key to
    /// continue after when more follow.
    pub fn list(
        &self,
        after: Option<&str>,
        limit: usize,
        now: Now,
    ) -> Result<(Vec<SecretRecord>, Option<String>), ApiError> {
        self.list_of(after, limit, now, Kind::Secret)
    }

    /// Certificates only for [`Kind::Certificate`]; every live name for [`Kind::Secret`].
    fn list_of(
        &self,
        after: Option<&str>,
        limit: usize,
        now: Now,
        kind: Kind,
    ) -> Result<(Vec<SecretRecord>, Option<String>), ApiError> {
        let conn = self.conn.lock();
        let sql = match kind {
            Kind::Secret => {
                "SELECT s.key, s.name, c.key IS NOT NULL FROM secrets s \
                 LEFT JOIN certificates c ON c.key = s.key WHERE s.state = 'live' \
                 AND s.ready_at <= ?1 AND s.key > ?2 ORDER BY s.key LIMIT ?3"
            }
            Kind::Certificate => {
                "SELECT s.key, s.name, 1 FROM secrets s JOIN certificates c ON c.key = s.key \
                 WHERE s.state = 'live' AND s.ready_at <= ?1 AND s.key > ?2 \
                 ORDER BY s.key LIMIT ?3"
            }
        };
        let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
        let rows: Vec<(String, String, bool)> = stmt
            .query_map(
                params![now.ms, after.unwrap_or(""), limit as i64 + 1],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let next = continuation(&rows, limit, |(key, ..)| key.clone());
        let mut out = Vec::with_capacity(rows.len().min(limit));
        for (key, name, managed) in rows.into_iter().take(limit) {
            if let Some(version) = Self::latest(&conn, &key).map_err(db_err)? {
                out.push(SecretRecord {
                    name,
                    version,
                    managed,
                });
            }
        }
        Ok((out, next))
    }

    /// `GET /secrets/{name}/versions`: sorted by version id, after `after`.
    pub fn list_versions(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
        now: Now,
    ) -> Result<(Vec<SecretRecord>, Option<String>), ApiError> {
        self.list_versions_of(name, after, limit, now, Kind::Secret)
    }

    fn list_versions_of(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
        now: Now,
        kind: Kind,
    ) -> Result<(Vec<SecretRecord>, Option<String>), ApiError> {
        let conn = self.conn.lock();
        let key = fold(name);
        // The service answers an empty list for an unknown name; so do we.
        let (display, managed) = match Self::live_name(&conn, name, now, kind) {
            Ok(found) => found,
            Err(e) if e.status == StatusCode::NOT_FOUND => return Ok((Vec::new(), None)),
            Err(e) => return Err(e),
        };
        let mut stmt = conn
            .prepare_cached(concat!(
                "SELECT ",
                version_cols!(),
                " FROM versions WHERE key = ?1 AND version > ?2 ORDER BY version LIMIT ?3"
            ))
            .map_err(db_err)?;
        let rows: Vec<VersionRecord> = stmt
            .query_map(
                params![key, after.unwrap_or(""), limit as i64 + 1],
                Self::row_to_version,
            )
            .map_err(db_err)?
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let next = continuation(&rows, limit, |v| v.version.clone());
        Ok((
            rows.into_iter()
                .take(limit)
                .map(|version| SecretRecord {
                    name: display.clone(),
                    version,
                    managed,
                })
                .collect(),
            next,
        ))
    }

    /// `GET /deletedsecrets`: completed deletions after `after` (deleted certificates are not
    /// deleted secrets).
    pub fn list_deleted(
        &self,
        after: Option<&str>,
        limit: usize,
        now: Now,
    ) -> Result<(Vec<DeletedRecord>, Option<String>), ApiError> {
        self.list_deleted_of(after, limit, now, Kind::Secret)
    }

    fn list_deleted_of(
        &self,
        after: Option<&str>,
        limit: usize,
        now: Now,
        kind: Kind,
    ) -> Result<(Vec<DeletedRecord>, Option<String>), ApiError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        let sql = match kind {
            Kind::Secret => {
                "SELECT key, name, deleted_date, scheduled_purge FROM secrets \
                 WHERE state = 'deleted' AND ready_at <= ?1 AND key > ?2 \
                 AND key NOT IN (SELECT key FROM certificates) ORDER BY key LIMIT ?3"
            }
            Kind::Certificate => {
                "SELECT key, name, deleted_date, scheduled_purge FROM secrets \
                 WHERE state = 'deleted' AND ready_at <= ?1 AND key > ?2 \
                 AND key IN (SELECT key FROM certificates) ORDER BY key LIMIT ?3"
            }
        };
        let rows: Vec<(String, String, i64, i64)> = {
            let mut stmt = tx.prepare_cached(sql).map_err(db_err)?;
            let rows = stmt
                .query_map(
                    params![now.ms, after.unwrap_or(""), limit as i64 + 1],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .map_err(db_err)?
                .collect::<Result<_, _>>()
                .map_err(db_err)?;
            rows
        };
        let next = continuation(&rows, limit, |(key, ..)| key.clone());
        let mut out = Vec::new();
        for (key, name, deleted_date, scheduled_purge) in rows.into_iter().take(limit) {
            if let Some(version) = Self::latest(&tx, &key).map_err(db_err)? {
                out.push(DeletedRecord {
                    name,
                    version,
                    deleted_date,
                    scheduled_purge,
                });
            }
        }
        tx.commit().map_err(db_err)?;
        Ok((out, next))
    }

    /// All versions of a live secret, for `POST /secrets/{name}/backup`.
    pub fn backup(&self, name: &str, now: Now) -> Result<BackupData, ApiError> {
        let conn = self.conn.lock();
        let (display, managed) = Self::live_name(&conn, name, now, Kind::Secret)?;
        if managed {
            // A certificate's secret travels with its certificate (certificate backups are not
            // served): a restored copy would be a plain secret holding a certificate's key.
            return Err(ApiError::managed_secret("backup"));
        }
        let mut stmt = conn
            .prepare_cached(concat!(
                "SELECT ",
                version_cols!(),
                " FROM versions WHERE key = ?1 ORDER BY seq"
            ))
            .map_err(db_err)?;
        let versions = stmt
            .query_map([fold(name)], Self::row_to_version)
            .map_err(db_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_err)?;
        Ok(BackupData {
            name: display,
            versions,
        })
    }

    /// `POST /secrets/restore`: the name must be free (not live, not deleted).
    pub fn restore(&self, data: BackupData, now: Now) -> Result<SecretRecord, ApiError> {
        let key = fold(&data.name);
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        match Self::state(&tx, &key, now).map_err(db_err)? {
            None => {}
            Some((display, State::Deleted { ready: true })) => {
                return Err(ApiError::deleted_but_recoverable(&display))
            }
            Some((display, State::Deleted { ready: false })) => {
                return Err(ApiError::being_deleted(&display))
            }
            Some((display, State::Live { .. })) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!("Secret {display} already exists."),
                ))
            }
        }
        let count = data.versions.len() as i64;
        tx.execute(
            "INSERT INTO secrets(key, name, state, ready_at, next_seq) VALUES (?1, ?2, 'live', 0, ?3)",
            params![key, data.name, count],
        )
        .map_err(db_err)?;
        for (seq, v) in data.versions.iter().enumerate() {
            Self::insert_version(&tx, &key, seq as i64 + 1, v).map_err(db_err)?;
        }
        let latest = Self::latest(&tx, &key)
            .map_err(db_err)?
            .ok_or_else(|| ApiError::bad_parameter("Backup blob contains no secret version."))?;
        tx.commit().map_err(db_err)?;
        Ok(SecretRecord {
            name: data.name,
            version: latest,
            managed: false,
        })
    }

    /// Wipes every secret and certificate, live and deleted (`POST /_akvfs/reset`).
    pub fn reset(&self) -> Result<(), ApiError> {
        self.conn
            .lock()
            .execute_batch(
                "DELETE FROM versions; DELETE FROM secrets; DELETE FROM certificate_versions; \
                 DELETE FROM certificates;",
            )
            .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(value: &str) -> NewVersion {
        NewVersion {
            value: SecretValue::from(value),
            content_type: None,
            tags: None,
            enabled: true,
            nbf: None,
            exp: None,
        }
    }

    const T0: Now = Now {
        ms: 1_700_000_000_000,
    };

    fn at(secs: i64) -> Now {
        Now {
            ms: T0.ms + secs * 1000,
        }
    }

    #[test]
    fn set_then_get_latest_and_by_version_case_insensitively() {
        let s = Store::open(None).expect("open");
        let a = s.set("MySecret", v("one"), T0).expect("set");
        let b = s.set("mysecret", v("two"), T0).expect("set");
        assert_eq!(b.name, "MySecret", "first spelling is kept");
        assert_eq!(a.version.version.len(), 32);
        let latest = s.get("MYSECRET", None, T0).expect("get");
        assert_eq!(latest.version.value.expose(), "two");
        let old = s
            .get("mysecret", Some(&a.version.version), T0)
            .expect("get by version");
        assert_eq!(old.version.value.expose(), "one");
        assert_eq!(
            s.get("mysecret", Some("0000"), T0).expect_err("404").status,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn deletion_completes_after_the_delay_and_blocks_reuse() {
        let s = Store::open(None).expect("open");
        s.set("x", v("1"), T0).expect("set");
        s.delete("x", Some((1000, 90)), T0).expect("delete");
        assert_eq!(
            s.get_deleted("x", T0).expect_err("pending").status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            s.set("x", v("2"), T0).expect_err("409").inner,
            Some("ObjectIsBeingDeleted")
        );
        assert_eq!(
            s.delete("x", Some((1000, 90)), T0).expect_err("404").status,
            StatusCode::NOT_FOUND
        );
        let done = at(2);
        assert!(s.get_deleted("x", done).is_ok());
        assert_eq!(
            s.set("x", v("2"), done).expect_err("409").inner,
            Some("ObjectIsDeletedButRecoverable")
        );
        s.recover("x", 1000, done).expect("recover");
        assert!(s.get("x", None, done).is_err(), "recovery pending");
        assert_eq!(
            s.get("x", None, at(4))
                .expect("live")
                .version
                .value
                .expose(),
            "1"
        );
    }

    #[test]
    fn expired_deleted_secrets_are_purged() {
        let s = Store::open(None).expect("open");
        s.set("x", v("1"), T0).expect("set");
        s.delete("x", Some((0, 7)), T0).expect("delete");
        assert!(s.get_deleted("x", at(7 * 86_400 - 1)).is_ok());
        assert!(s.get_deleted("x", at(7 * 86_400)).is_err());
        s.set("x", v("new"), at(7 * 86_400))
            .expect("name is free again");
    }

    #[test]
    fn list_pages_in_folded_order() {
        let s = Store::open(None).expect("open");
        for name in ["b", "A", "c", "D"] {
            s.set(name, v("v"), T0).expect("set");
        }
        let (page, next) = s.list(None, 3, T0).expect("list");
        let names: Vec<_> = page.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["A", "b", "c"]);
        assert_eq!(next.as_deref(), Some("c"));
        let (page, next) = s.list(Some("c"), 3, T0).expect("list");
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].name, "D");
        assert_eq!(next, None);
    }
}
