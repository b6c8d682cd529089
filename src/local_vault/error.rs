//! The one error type of the server's HTTP layer, rendered exactly as the service renders errors:
//! `{"error":{"code","message","innererror"?}}` with the service's status codes and texts.

use axum::http::StatusCode;

use crate::vault::model::MAX_SECRET_VALUE_CHARS;

/// Which object family an error speaks of: the service words its texts (and codes) by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Secret,
    Certificate,
}

impl Kind {
    /// (`Code`NotFound code, lower-case word, capitalized word)
    fn words(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Kind::Secret => ("SecretNotFound", "secret", "Secret"),
            Kind::Certificate => ("CertificateNotFound", "certificate", "Certificate"),
        }
    }
}

/// An error answer of the data plane. Built by the store and the handlers, rendered in `api`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub inner: Option<&'static str>,
    /// Seconds for a `Retry-After` header (throttling).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            inner: None,
            retry_after: None,
        }
    }

    pub fn with_inner(mut self, inner: &'static str) -> Self {
        self.inner = Some(inner);
        self
    }

    pub fn bad_parameter(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }

    /// A value over the service's limit. The message is the service's; the inner error code
    /// `SecretTooLarge` is what the issue reports the service sending (no recording shows it:
    /// unconfirmed).
    pub fn secret_too_large() -> Self {
        ApiError::bad_parameter(format!(
            "Secret is beyond the maximum permitted length of {MAX_SECRET_VALUE_CHARS} characters."
        ))
        .with_inner("SecretTooLarge")
    }

    /// No bearer token.
    pub fn unauthorized() -> Self {
        ApiError::unauthorized_with("AKV10000: Request is missing a Bearer or PoP token.")
    }

    /// A refused token, with the service's text for the reason.
    pub fn unauthorized_with(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    /// An unknown name, worded for its kind (`CertificateNotFound` for certificates).
    pub fn not_found(kind: Kind, name: &str) -> Self {
        let (code, word, _) = kind.words();
        ApiError::new(
            StatusCode::NOT_FOUND,
            code,
            format!(
                "A {word} with (name/id) {name} was not found in this key vault. If you recently \
                 deleted this {word} you may be able to recover it using the correct recovery \
                 command. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }

    /// "Deleted Secret not found: NAME", "Deleted Certificate not found: NAME".
    pub fn deleted_not_found_of(kind: Kind, name: &str) -> Self {
        let (code, _, word) = kind.words();
        ApiError::new(
            StatusCode::NOT_FOUND,
            code,
            format!("Deleted {word} not found: {name}"),
        )
    }

    /// A write through the secrets API to the secret backing a certificate. The service refuses
    /// these; its exact status and text are unconfirmed (no recording shows one).
    pub fn managed_secret(operation: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Operation {operation} is not allowed on a managed secret: it backs a \
                 certificate; change it through the certificate."
            ),
        )
    }

    /// An operation of the certificates API the local vault does not implement.
    pub fn not_implemented(what: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!(
                "The local vault does not implement {what}; import a certificate instead \
                 (POST /certificates/{{name}}/import)."
            ),
        )
    }

    pub fn disabled(operation: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("Operation {operation} is not allowed on a disabled secret."),
        )
        .with_inner("SecretDisabled")
    }

    pub fn forbidden_by_policy_of(kind: Kind, permission: &str, client_id: &str) -> Self {
        let (_, word, _) = kind.words();
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "The user, group or application 'appid={client_id}' does not have {word}s \
                 {permission} permission on key vault 'local-vault'. For help resolving this \
                 issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
            ),
        )
        .with_inner("ForbiddenByPolicy")
    }

    pub fn deleted_but_recoverable(name: &str) -> Self {
        ApiError::deleted_but_recoverable_of(Kind::Secret, name)
    }

    pub fn deleted_but_recoverable_of(kind: Kind, name: &str) -> Self {
        let (_, word, cap) = kind.words();
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "{cap} {name} is currently in a deleted but recoverable state, and its name \
                 cannot be reused; in this state, the {word} can only be recovered or purged."
            ),
        )
        .with_inner("ObjectIsDeletedButRecoverable")
    }

    pub fn being_deleted(name: &str) -> Self {
        ApiError::being_deleted_of(Kind::Secret, name)
    }

    pub fn being_deleted_of(kind: Kind, name: &str) -> Self {
        let (_, _, cap) = kind.words();
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("{cap} {name} is currently being deleted."),
        )
        .with_inner("ObjectIsBeingDeleted")
    }

    pub fn being_recovered_of(kind: Kind, name: &str) -> Self {
        let (_, _, cap) = kind.words();
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("{cap} {name} is currently being recovered."),
        )
        .with_inner("ObjectIsBeingRecovered")
    }

    pub fn throttled(retry_after: Option<u64>) -> Self {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Throttled",
            "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
        );
        e.retry_after = retry_after;
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            message,
        )
    }

    /// The service's error JSON. The inner error carries only its code, as the service's does
    /// (so no empty `message` from the shared model type).
    pub fn body(&self) -> serde_json::Value {
        let mut error = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(inner) = self.inner {
            error["innererror"] = serde_json::json!({ "code": inner });
        }
        serde_json::json!({ "error": error })
    }
}
