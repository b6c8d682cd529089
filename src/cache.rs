//! Value, listing and negative caches (TTL, LRU by bytes, coalesced misses). Nothing of FUSE or
//! HTTP.
