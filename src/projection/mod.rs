//! Projections (SPEC §8, `akvfs mount VAULT DIR --config FILE`): the tree of files a legacy
//! application expects, described by a TOML config. Pure: parsing and validating the config
//! ([`config`]), name conventions ([`names`]), built-in formats ([`formats`]) and templates
//! ([`template`]). The filesystem wires these in; nothing here does I/O on the vault.

pub mod config;
pub mod formats;
pub mod names;
pub mod template;
