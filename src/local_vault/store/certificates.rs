//! Certificates in the store: the certificate operations over the names, versions and soft
//! delete of the secrets table (see the parent module), plus a certificate's policy and each
//! version's leaf certificate.

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    db_err, fold, DeletedRecord, Kind, NewVersion, Now, SecretRecord, Store, VersionRecord,
    VersionUpdate,
};
use crate::local_vault::error::ApiError;
use crate::vault::certificate_model::CertificatePolicy;

/// What an import writes (already read and validated by the HTTP layer): the backing secret's
/// version (value, content type, tags, attributes), the leaf's DER and the policy.
#[derive(Debug)]
pub struct NewCertificate {
    pub version: NewVersion,
    pub cer: Vec<u8>,
    pub policy: CertificatePolicy,
}

/// A certificate version as the vault shows it. `policy` is the certificate's (the same for
/// every version); the HTTP layer shows it where the service does.
#[derive(Clone, Debug)]
pub struct CertificateRecord {
    pub name: String,
    pub version: VersionRecord,
    pub cer: Vec<u8>,
    pub policy: CertificatePolicy,
}

#[derive(Clone, Debug)]
pub struct DeletedCertificateRecord {
    pub deleted: DeletedRecord,
    pub cer: Vec<u8>,
    pub policy: CertificatePolicy,
}

impl Store {
    fn cer_of(conn: &Connection, key: &str, version: &str) -> Result<Vec<u8>, ApiError> {
        conn.prepare_cached("SELECT cer FROM certificate_versions WHERE key = ?1 AND version = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![key, version], |r| r.get(0))
                    .optional()
            })
            .map_err(db_err)?
            .ok_or_else(|| ApiError::internal("A certificate version has no certificate."))
    }

    fn policy_of(conn: &Connection, key: &str) -> Result<CertificatePolicy, ApiError> {
        let text: Option<String> = conn
            .prepare_cached("SELECT policy FROM certificates WHERE key = ?1")
            .and_then(|mut stmt| stmt.query_row([key], |r| r.get(0)).optional())
            .map_err(db_err)?;
        // Written by us; unreadable text reads as an empty policy rather than failing.
        Ok(text
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    fn certificate_record(
        conn: &Connection,
        secret: SecretRecord,
    ) -> Result<CertificateRecord, ApiError> {
        let key = fold(&secret.name);
        Ok(CertificateRecord {
            cer: Self::cer_of(conn, &key, &secret.version.version)?,
            policy: Self::policy_of(conn, &key)?,
            name: secret.name,
            version: secret.version,
        })
    }

    /// `POST /certificates/{name}/import`: a new version of a certificate (a new certificate
    /// when the name is free). The policy replaces the certificate's, keeping its `created`.
    pub fn import_certificate(
        &self,
        name: &str,
        new: NewCertificate,
        now: Now,
    ) -> Result<CertificateRecord, ApiError> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().map_err(db_err)?;
        Self::sweep_expired(&tx, now).map_err(db_err)?;
        let (key, display) = Self::writable(&tx, name, now, Kind::Certificate)?;
        let mut policy = new.policy;
        let previous = Self::policy_of(&tx, &key)?;
        if let (Some(attrs), Some(old)) = (policy.attributes.as_mut(), previous.attributes) {
            attrs.created = old.created.or(attrs.created);
        }
        let policy_json = serde_json::to_string(&policy)
            .map_err(|_| ApiError::internal("The certificate policy could not be stored."))?;
        tx.execute(
            "INSERT INTO certificates(key, policy) VALUES (?1, ?2) \
             ON CONFLICT(key) DO UPDATE SET policy = excluded.policy",
            params![key, policy_json],
        )
        .map_err(db_err)?;
        let version = Self::add_version(&tx, &key, new.version, now)?;
        tx.execute(
            "INSERT INTO certificate_versions(key, version, cer) VALUES (?1, ?2, ?3)",
            params![key, version.version, new.cer],
        )
        .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(CertificateRecord {
            name: display,
            version,
            cer: new.cer,
            policy,
        })
    }

    /// `GET /certificates/{name}[/{version}]`.
    pub fn get_certificate(
        &self,
        name: &str,
        version: Option<&str>,
        now: Now,
    ) -> Result<CertificateRecord, ApiError> {
        let secret = self.get_of(name, version, now, Kind::Certificate)?;
        Self::certificate_record(&self.conn.lock(), secret)
    }

    /// `GET /certificates/{name}/policy`.
    pub fn certificate_policy(&self, name: &str, now: Now) -> Result<CertificatePolicy, ApiError> {
        let conn = self.conn.lock();
        Self::live_name(&conn, name, now, Kind::Certificate)?;
        Self::policy_of(&conn, &fold(name))
    }

    /// `PATCH /certificates/{name}/{version}`: tags and attributes of one version (also those of
    /// its backing secret).
    pub fn update_certificate(
        &self,
        name: &str,
        version: Option<&str>,
        change: VersionUpdate,
        now: Now,
    ) -> Result<CertificateRecord, ApiError> {
        let secret = self.update_of(name, version, change, now, Kind::Certificate)?;
        Self::certificate_record(&self.conn.lock(), secret)
    }

    /// `DELETE /certificates/{name}`: the certificate and its secret, soft or for good.
    pub fn delete_certificate(
        &self,
        name: &str,
        soft: Option<(i64, i64)>,
        now: Now,
    ) -> Result<DeletedCertificateRecord, ApiError> {
        // Read before the delete: without soft delete the rows are gone after it.
        let (cer, policy) = {
            let conn = self.conn.lock();
            Self::live_name(&conn, name, now, Kind::Certificate)?;
            let key = fold(name);
            let latest = Self::latest(&conn, &key)
                .map_err(db_err)?
                .ok_or_else(|| ApiError::not_found(Kind::Certificate, name))?;
            (
                Self::cer_of(&conn, &key, &latest.version)?,
                Self::policy_of(&conn, &key)?,
            )
        };
        let deleted = self.delete_of(name, soft, now, Kind::Certificate)?;
        Ok(DeletedCertificateRecord {
            deleted,
            cer,
            policy,
        })
    }

    fn deleted_certificate_record(
        conn: &Connection,
        deleted: DeletedRecord,
    ) -> Result<DeletedCertificateRecord, ApiError> {
        let key = fold(&deleted.name);
        Ok(DeletedCertificateRecord {
            cer: Self::cer_of(conn, &key, &deleted.version.version)?,
            policy: Self::policy_of(conn, &key)?,
            deleted,
        })
    }

    /// `GET /deletedcertificates/{name}`: 404 until the deletion has completed.
    pub fn get_deleted_certificate(
        &self,
        name: &str,
        now: Now,
    ) -> Result<DeletedCertificateRecord, ApiError> {
        let deleted = self.get_deleted_of(name, now, Kind::Certificate)?;
        Self::deleted_certificate_record(&self.conn.lock(), deleted)
    }

    /// `DELETE /deletedcertificates/{name}`.
    pub fn purge_deleted_certificate(&self, name: &str, now: Now) -> Result<(), ApiError> {
        self.purge_of(name, now, Kind::Certificate)
    }

    /// `POST /deletedcertificates/{name}/recover`: live again from `now + delay_ms`.
    pub fn recover_deleted_certificate(
        &self,
        name: &str,
        delay_ms: i64,
        now: Now,
    ) -> Result<CertificateRecord, ApiError> {
        let secret = self.recover_of(name, delay_ms, now, Kind::Certificate)?;
        Self::certificate_record(&self.conn.lock(), secret)
    }

    /// `GET /certificates`: live certificates after `after`, sorted case-insensitively.
    pub fn list_certificates(
        &self,
        after: Option<&str>,
        limit: usize,
        now: Now,
    ) -> Result<(Vec<CertificateRecord>, Option<String>), ApiError> {
        let (secrets, next) = self.list_of(after, limit, now, Kind::Certificate)?;
        let conn = self.conn.lock();
        let records = secrets
            .into_iter()
            .map(|s| Self::certificate_record(&conn, s))
            .collect::<Result<_, _>>()?;
        Ok((records, next))
    }

    /// `GET /certificates/{name}/versions`: sorted by version id (an unknown name: empty).
    pub fn list_certificate_versions(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
        now: Now,
    ) -> Result<(Vec<CertificateRecord>, Option<String>), ApiError> {
        let (secrets, next) = self.list_versions_of(name, after, limit, now, Kind::Certificate)?;
        let conn = self.conn.lock();
        let records = secrets
            .into_iter()
            .map(|s| Self::certificate_record(&conn, s))
            .collect::<Result<_, _>>()?;
        Ok((records, next))
    }

    /// `GET /deletedcertificates`: completed deletions after `after`.
    pub fn list_deleted_certificates(
        &self,
        after: Option<&str>,
        limit: usize,
        now: Now,
    ) -> Result<(Vec<DeletedCertificateRecord>, Option<String>), ApiError> {
        let (deleted, next) = self.list_deleted_of(after, limit, now, Kind::Certificate)?;
        let conn = self.conn.lock();
        let records = deleted
            .into_iter()
            .map(|d| Self::deleted_certificate_record(&conn, d))
            .collect::<Result<_, _>>()?;
        Ok((records, next))
    }
}
