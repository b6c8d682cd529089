//! Wires the runtime, the client, the cache, the filesystem core, the mount and signals.
