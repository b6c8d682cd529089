//! The filesystem core: inodes, name rules, handles and write buffers. Returns plain Rust
//! results; never sees `fuser` types.
