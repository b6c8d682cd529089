//! The inode table: a stable number for every path the kernel has seen. Secrets are keyed by
//! their lower-cased name (the vault is case-insensitive), so `FOO` and `foo` are one inode.
//! Inode numbers are never reused while mounted. A node lives while the kernel holds lookups of
//! it (or the core holds state for it: an open file, a placeholder, a scratch file); when the
//! kernel forgets it, it goes, so a long-running daemon does not grow with every name it saw.

use std::collections::HashMap;

use crate::certificate_files::Part;

pub const ROOT_INO: u64 = 1;
pub const VERSIONS_DIR_INO: u64 = 2;
pub const DELETED_DIR_INO: u64 = 3;
pub const CERTIFICATES_DIR_INO: u64 = 4;

/// Name of the directory of old versions.
pub const VERSIONS_DIR_NAME: &str = ".versions";
/// Name of the directory of soft-deleted secrets.
pub const DELETED_DIR_NAME: &str = ".deleted";
/// Name of the directory of certificates as files (SPEC §10).
pub const CERTIFICATES_DIR_NAME: &str = ".certificates";

/// What an inode stands for. Secret names are lower-cased here.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NodeKey {
    Root,
    VersionsDir,
    DeletedDir,
    /// `/NAME`
    Secret(String),
    /// `/.versions/NAME`
    VersionsOf(String),
    /// `/.versions/NAME/VERSION`
    Version(String, String),
    /// `/.deleted/NAME`
    Deleted(String),
    /// `/NAME` for an editor's scratch file kept in memory (exact spelling).
    Scratch(String),
    /// `/.certificates`
    CertificatesDir,
    /// `/.certificates/NAME`
    CertificateDir(String),
    /// `/.certificates/NAME/FILE`
    CertificateFile(String, Part),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub key: NodeKey,
    /// The name as the vault spells it (or as it was created), for vault calls and listings.
    pub name: String,
    /// The secret version whose content the kernel may hold in its page cache.
    pub kernel_version: Option<String>,
    /// Lookups the kernel holds (entries answered minus `forget`s).
    lookups: u64,
}

pub struct InodeTable {
    by_key: HashMap<NodeKey, u64>,
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

impl Default for InodeTable {
    fn default() -> Self {
        let mut table = InodeTable {
            by_key: HashMap::new(),
            nodes: HashMap::new(),
            next_ino: CERTIFICATES_DIR_INO + 1,
        };
        for (ino, key, name) in [
            (ROOT_INO, NodeKey::Root, ""),
            (VERSIONS_DIR_INO, NodeKey::VersionsDir, VERSIONS_DIR_NAME),
            (DELETED_DIR_INO, NodeKey::DeletedDir, DELETED_DIR_NAME),
            (
                CERTIFICATES_DIR_INO,
                NodeKey::CertificatesDir,
                CERTIFICATES_DIR_NAME,
            ),
        ] {
            table.by_key.insert(key.clone(), ino);
            table.nodes.insert(
                ino,
                Node {
                    key,
                    name: name.to_owned(),
                    kernel_version: None,
                    lookups: 0,
                },
            );
        }
        table
    }
}

impl InodeTable {
    /// The inode of `key`, allocated on first use. `name` (the vault's spelling) replaces the
    /// remembered one.
    pub fn ino_for(&mut self, key: NodeKey, name: &str) -> u64 {
        if let Some(&ino) = self.by_key.get(&key) {
            if let Some(node) = self.nodes.get_mut(&ino) {
                if node.name != name {
                    node.name = name.to_owned();
                }
            }
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_key.insert(key.clone(), ino);
        self.nodes.insert(
            ino,
            Node {
                key,
                name: name.to_owned(),
                kernel_version: None,
                lookups: 0,
            },
        );
        ino
    }

    /// The kernel was given an entry for `ino`: one more lookup it holds. `false` when the
    /// node is gone (forgotten meanwhile): the caller resolves the name again.
    pub fn remember(&mut self, ino: u64) -> bool {
        match self.nodes.get_mut(&ino) {
            Some(node) => {
                node.lookups += 1;
                true
            }
            None => false,
        }
    }

    /// The kernel forgot `count` lookups of `ino`; `true` when it holds none any more.
    pub fn forget(&mut self, ino: u64, count: u64) -> bool {
        self.nodes.get_mut(&ino).is_some_and(|node| {
            node.lookups = node.lookups.saturating_sub(count);
            node.lookups == 0
        })
    }

    /// Whether the kernel holds a lookup of `ino` (an unknown inode is not held).
    pub fn is_held(&self, ino: u64) -> bool {
        self.nodes.get(&ino).is_some_and(|node| node.lookups > 0)
    }

    /// Drop a node the kernel holds no lookup of (the fixed directories stay).
    pub fn remove_unheld(&mut self, ino: u64) -> bool {
        if ino <= CERTIFICATES_DIR_INO || self.is_held(ino) {
            return false;
        }
        if let Some(node) = self.nodes.remove(&ino) {
            if self.by_key.get(&node.key) == Some(&ino) {
                self.by_key.remove(&node.key);
            }
        }
        true
    }

    /// How many nodes the table holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Node> {
        self.nodes.get_mut(&ino)
    }

    pub fn lookup(&self, key: &NodeKey) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    /// After a rename the kernel keeps the source's inode under the new name: make `to` mean
    /// that inode. The target's previous inode (if any) is orphaned, as the kernel drops it.
    /// Answers the moved inode.
    pub fn rekey(&mut self, from: &NodeKey, to: NodeKey, name: &str) -> Option<u64> {
        let ino = self.by_key.remove(from)?;
        self.by_key.insert(to.clone(), ino);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.key = to;
            node.name = name.to_owned();
            node.kernel_version = None;
        }
        Some(ino)
    }

    /// Every secret inode, and every certificate file's (for cache-wide invalidation).
    pub fn secret_inodes(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, node)| {
                matches!(node.key, NodeKey::Secret(_) | NodeKey::CertificateFile(..))
            })
            .map(|(&ino, _)| ino)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_inode_per_key_and_the_latest_spelling_wins() {
        let mut table = InodeTable::default();
        let a = table.ino_for(NodeKey::Secret("foo".into()), "foo");
        let b = table.ino_for(NodeKey::Secret("foo".into()), "Foo");
        assert_eq!(a, b);
        assert_eq!(table.get(a).map(|n| n.name.as_str()), Some("Foo"));
        assert!(a > DELETED_DIR_INO);
        let c = table.ino_for(NodeKey::Deleted("foo".into()), "foo");
        assert_ne!(a, c);
        let moved = table.rekey(
            &NodeKey::Secret("foo".into()),
            NodeKey::Secret("bar".into()),
            "bar",
        );
        assert_eq!(moved, Some(a));
        assert_eq!(table.lookup(&NodeKey::Secret("bar".into())), Some(a));
        assert_eq!(table.lookup(&NodeKey::Secret("foo".into())), None);
    }
}
