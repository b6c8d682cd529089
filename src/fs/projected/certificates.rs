//! Certificate files of a projected tree (`[[file]] certificate = "NAME"`, `part = …`, SPEC
//! §10): read-only like templates, made by the vault view from the certificate's backing secret.
//! Every part of one certificate comes from the version of that one secret the values cache
//! holds, so `tls.crt` and `tls.key` read at once are one certificate's, and both show a new
//! version from the same moment on.

use std::sync::Arc;

use tracing::warn;

use super::ProjectedFs;
use crate::certificate_files::Part;
use crate::fs::core::SecretData;
use crate::fs::FsError;

impl ProjectedFs {
    /// The content of file `path`: part `part` of certificate `certificate`.
    pub(super) async fn certificate_file(
        &self,
        path: &str,
        certificate: &str,
        part: Part,
    ) -> Result<Arc<SecretData>, FsError> {
        match self.vault.certificate_part(certificate, part).await {
            Ok(Some(file)) => Ok(file),
            Ok(None) => {
                warn!(
                    file = path,
                    certificate,
                    part = part.as_str(),
                    "the certificate has no such part (its key is not exportable, or only the \
                     certificate may be read, not its secret): the file is not there"
                );
                Err(FsError::NotFound {
                    name: path.to_owned(),
                })
            }
            Err(error) => {
                warn!(file = path, certificate, %error, "cannot read the certificate file");
                Err(error)
            }
        }
    }
}
