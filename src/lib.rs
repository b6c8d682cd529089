//! akvfs: an Azure Key Vault's secrets as files.
//!
//! Layers (dependencies point one way):
//! `cli → app → mount → fuse → fs → cache`, `fs → vault`, `local_vault → vault::model`; `fs`,
//! `projection` and `local_vault` share the pure [`certificate_files`] (certificate material:
//! a backing secret as PEM and PFX files, PEM texts read).

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
