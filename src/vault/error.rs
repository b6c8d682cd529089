//! What can go wrong talking to a vault, in the terms the filesystem needs to pick an errno.
//! Messages name the secret and never contain a value or a token.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VaultError {
    /// 404 `SecretNotFound` (or any 404).
    #[error("secret {name} not found")]
    NotFound { name: String },
    /// 403 `ForbiddenByPolicy` or another 403 that is not about a disabled secret.
    #[error("forbidden by the vault's access policy on {name}: {message}")]
    Forbidden { name: String, message: String },
    /// 403 `SecretDisabled`: the secret exists but is disabled.
    #[error("secret {name} is disabled")]
    SecretDisabled { name: String },
    /// 409 `ObjectIsDeletedButRecoverable`.
    #[error("secret {name} is deleted but recoverable; recover or purge it to reuse the name")]
    DeletedButRecoverable { name: String },
    /// 409 `ObjectIsBeingDeleted` (or being recovered).
    #[error("secret {name} is being deleted; try again when the deletion has completed")]
    BeingDeleted { name: String },
    /// Any other 409.
    #[error("conflict on {name}: {message}")]
    Conflict { name: String, message: String },
    /// The value is longer than the service's limit (25,600 characters).
    #[error("value of {name} is beyond the maximum permitted length of 25600 characters")]
    ValueTooLarge { name: String },
    /// Any other 400.
    #[error("the vault rejected the request on {name}: {code}: {message}")]
    BadRequest {
        name: String,
        code: String,
        message: String,
    },
    /// 429 still answered after the retries.
    #[error("the vault is throttling requests (on {name}); retries exhausted")]
    Throttled { name: String },
    /// 5xx or transport failures after the retries.
    #[error("the vault is unavailable (on {name}): {message}")]
    Unavailable { name: String, message: String },
    /// The request deadline or the delete/recover poll timeout passed.
    #[error("timed out: {what}")]
    Timeout { what: String },
    /// No credential worked, the challenge was refused, or a 401 persisted.
    #[error("authentication failed: {message}")]
    Auth { message: String },
    /// The response could not be understood (invalid JSON, oversized body, foreign nextLink).
    #[error("invalid response from the vault (on {name}): {message}")]
    InvalidResponse { name: String, message: String },
}
