//! akvfs: an Azure Key Vault's secrets as files.
//!
//! Layers (dependencies point one way):
//! `cli → app → mount → fuse → fs → cache`, `fs → vault`, `local_vault → vault::model`; `fs` and `projection` share the pure
//! [`certificate_files`] (a certificate's backing secret as PEM and PFX files).

pub mod app;
pub mod cache;
pub mod certificate_files;
pub mod cli;
pub mod fs;
pub mod fuse;
pub mod hooks;
pub mod local_vault;
pub mod mount;
pub mod mount_helper;
pub mod permissions;
pub mod projection;
pub mod secret_value;
pub mod vault;
pub mod zeroing_alloc;
