//! The one error type of the server's HTTP layer, rendered exactly as the service renders errors:
//! `{"error":{"code","message","innererror"?}}` with the service's status codes and texts.

use axum::http::StatusCode;

use crate::vault::model::MAX_SECRET_VALUE_CHARS;

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

    /// `GET /secrets/{name}`, `PATCH`, `DELETE /secrets/{name}`, backup of an unknown name.
    pub fn secret_not_found(name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            format!(
                "A secret with (name/id) {name} was not found in this key vault. If you recently \
                 deleted this secret you may be able to recover it using the correct recovery \
                 command. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }

    /// A known name with an unknown version.
    pub fn version_not_found(name: &str, version: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            format!(
                "A secret with (name/id) {name}/{version} was not found in this key vault. If you \
                 recently deleted this secret you may be able to recover it using the correct \
                 recovery command. For help resolving this issue, please see \
                 https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        )
    }

    /// `GET`/`DELETE /deletedsecrets/{name}`, recover.
    pub fn deleted_not_found(name: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            format!("Deleted Secret not found: {name}"),
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

    pub fn forbidden_by_policy(permission: &str, client_id: &str) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "The user, group or application 'appid={client_id}' does not have secrets \
                 {permission} permission on key vault 'local-vault'. For help resolving this \
                 issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"
            ),
        )
        .with_inner("ForbiddenByPolicy")
    }

    pub fn deleted_but_recoverable(name: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Secret {name} is currently in a deleted but recoverable state, and its name \
                 cannot be reused; in this state, the secret can only be recovered or purged."
            ),
        )
        .with_inner("ObjectIsDeletedButRecoverable")
    }

    pub fn being_deleted(name: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Secret {name} is currently being deleted."),
        )
        .with_inner("ObjectIsBeingDeleted")
    }

    pub fn being_recovered(name: &str) -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("Secret {name} is currently being recovered."),
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
