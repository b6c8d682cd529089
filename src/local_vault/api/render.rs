//! Store records as the service's JSON: bundles, items, deleted items, next links.

use axum::http::StatusCode;
use axum::response::Response;

use super::json_response;
use super::secrets::{encode_skiptoken, Paging};
use crate::local_vault::store::{DeletedRecord, SecretRecord, VersionRecord};
use crate::local_vault::Shared;
use crate::vault::model::{
    DeletedSecretBundle, DeletedSecretItem, ListPage, SecretAttributes, SecretBundle, SecretItem,
};

pub(super) struct Render<'a> {
    pub(super) st: &'a Shared,
    pub(super) host: &'a str,
}

impl Render<'_> {
    pub(super) fn base(&self) -> String {
        format!("https://{}", self.host)
    }

    pub(super) fn attributes(&self, rec: &SecretRecord) -> SecretAttributes {
        self.version_attributes(&rec.version)
    }

    pub(super) fn version_attributes(&self, v: &VersionRecord) -> SecretAttributes {
        let (level, days) = self.st.recovery_level();
        SecretAttributes {
            enabled: Some(v.enabled),
            nbf: v.nbf,
            exp: v.exp,
            created: Some(v.created),
            updated: Some(v.updated),
            recovery_level: Some(level.to_owned()),
            recoverable_days: days,
        }
    }

    pub(super) fn bundle(&self, rec: &SecretRecord, with_value: bool) -> SecretBundle {
        SecretBundle {
            value: with_value.then(|| rec.version.value.clone()),
            id: Some(format!(
                "{}/secrets/{}/{}",
                self.base(),
                rec.name,
                rec.version.version
            )),
            content_type: rec.version.content_type.clone(),
            attributes: Some(self.attributes(rec)),
            tags: rec.version.tags.clone(),
            // A certificate's secret names the key backing the certificate, as the service's.
            kid: rec
                .managed
                .then(|| format!("{}/keys/{}/{}", self.base(), rec.name, rec.version.version)),
            managed: rec.managed.then_some(true),
        }
    }

    pub(super) fn item(&self, rec: &SecretRecord, versioned: bool) -> SecretItem {
        let id = if versioned {
            format!(
                "{}/secrets/{}/{}",
                self.base(),
                rec.name,
                rec.version.version
            )
        } else {
            format!("{}/secrets/{}", self.base(), rec.name)
        };
        SecretItem {
            id: Some(id),
            attributes: Some(self.attributes(rec)),
            // The service lists a certificate's secret with `"tags": {}` when it has none.
            tags: match rec.managed {
                true => Some(rec.version.tags.clone().unwrap_or_default()),
                false => rec.version.tags.clone(),
            },
            content_type: rec.version.content_type.clone(),
            managed: rec.managed.then_some(true),
        }
    }

    pub(super) fn deleted_bundle(&self, rec: &DeletedRecord) -> DeletedSecretBundle {
        let as_secret = SecretRecord {
            name: rec.name.clone(),
            version: rec.version.clone(),
            managed: false,
        };
        let mut secret = self.bundle(&as_secret, false);
        secret.value = None;
        let soft = self.st.config.soft_delete;
        DeletedSecretBundle {
            secret,
            recovery_id: soft.then(|| format!("{}/deletedsecrets/{}", self.base(), rec.name)),
            scheduled_purge_date: soft.then_some(rec.scheduled_purge),
            deleted_date: soft.then_some(rec.deleted_date),
        }
    }

    pub(super) fn deleted_item(&self, rec: &DeletedRecord) -> DeletedSecretItem {
        let as_secret = SecretRecord {
            name: rec.name.clone(),
            version: rec.version.clone(),
            managed: false,
        };
        DeletedSecretItem {
            item: self.item(&as_secret, false),
            recovery_id: Some(format!("{}/deletedsecrets/{}", self.base(), rec.name)),
            scheduled_purge_date: Some(rec.scheduled_purge),
            deleted_date: Some(rec.deleted_date),
        }
    }

    /// A list answer; `next` (the key to continue after) becomes the `nextLink`, and its
    /// absence the `"nextLink": null` of the last page.
    pub(super) fn list_page<T: serde::Serialize>(
        &self,
        value: Vec<T>,
        next: Option<String>,
        path: &str,
        api_version: &str,
        page: &Paging,
    ) -> Response {
        let body = ListPage {
            value,
            next_link: next.map(|after| self.next_link(path, api_version, &after, page)),
        };
        json_response(StatusCode::OK, &body)
    }

    /// Absolute, like the service's: `https://HOST/PATH?api-version=V&$skiptoken=T` (the `$`
    /// unescaped, as the service writes it; the token is base64url and needs no escaping).
    pub(super) fn next_link(
        &self,
        path: &str,
        api_version: &str,
        after: &str,
        page: &Paging,
    ) -> String {
        let version: String =
            url::form_urlencoded::byte_serialize(api_version.as_bytes()).collect();
        let mut link = format!(
            "{}{}?api-version={version}&$skiptoken={}",
            self.base(),
            path,
            encode_skiptoken(after)
        );
        if page.explicit_size {
            link.push_str(&format!("&maxresults={}", page.size));
        }
        link
    }
}
