//! akvfs: an Azure Key Vault's secrets as files.
//!
//! Layers (dependencies point one way):
//! `cli → app → mount → fuse → fs → cache`, `fs → vault`, `local_vault → vault::model`.

pub mod app;
pub mod cache;
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
