//! The projected tree's inode table: a number for every tree path the kernel has seen (the
//! root is 1), how many lookups of it the kernel holds, and the vault view's inode that each
//! secret's file holds one lookup of. A node goes when the kernel forgets it.

use std::collections::HashMap;

use super::ROOT_INO;

/// A node of the tree, by what the config calls it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum TreeKey {
    /// A configured path: "" (the root), a directory, an entry.
    Path(String),
    /// A file of a `[[dir]]` entry: the directory's path and the file's name.
    DirFile(String, String),
}

struct TreeNode {
    key: TreeKey,
    lookups: u64,
    /// The vault view's inode this node holds a lookup of (a secret's file).
    holds: Option<u64>,
}

pub(super) struct TreeNodes {
    by_key: HashMap<TreeKey, u64>,
    nodes: HashMap<u64, TreeNode>,
    next_ino: u64,
}

impl Default for TreeNodes {
    fn default() -> Self {
        let root = TreeKey::Path(String::new());
        TreeNodes {
            by_key: HashMap::from([(root.clone(), ROOT_INO)]),
            nodes: HashMap::from([(
                ROOT_INO,
                TreeNode {
                    key: root,
                    lookups: 0,
                    holds: None,
                },
            )]),
            next_ino: ROOT_INO + 1,
        }
    }
}

impl TreeNodes {
    /// The inode of `key`, allocated on first use.
    pub(super) fn ino_for(&mut self, key: TreeKey) -> u64 {
        if let Some(&ino) = self.by_key.get(&key) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_key.insert(key.clone(), ino);
        self.nodes.insert(
            ino,
            TreeNode {
                key,
                lookups: 0,
                holds: None,
            },
        );
        ino
    }

    pub(super) fn lookup(&self, key: &TreeKey) -> Option<u64> {
        self.by_key.get(key).copied()
    }

    pub(super) fn key_of(&self, ino: u64) -> Option<TreeKey> {
        self.nodes.get(&ino).map(|node| node.key.clone())
    }

    /// The kernel was given an entry for `ino`.
    pub(super) fn remember(&mut self, ino: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += 1;
        }
    }

    /// The kernel forgot `count` lookups of `ino`. When it holds none, the node goes (not the
    /// root) and the vault view's inode it held is answered, to give its lookup back.
    pub(super) fn forget(&mut self, ino: u64, count: u64) -> Option<u64> {
        let node = self.nodes.get_mut(&ino)?;
        node.lookups = node.lookups.saturating_sub(count);
        if node.lookups > 0 || ino == ROOT_INO {
            return None;
        }
        let node = self.nodes.remove(&ino)?;
        if self.by_key.get(&node.key) == Some(&ino) {
            self.by_key.remove(&node.key);
        }
        node.holds
    }

    /// Node `ino` was just given a lookup of the vault view's inode `inner`: it keeps one. The
    /// lookup to give back (the same inode held already, the one held before, or `inner` when
    /// the node is gone) is answered.
    pub(super) fn hold(&mut self, ino: u64, inner: u64) -> Option<u64> {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return Some(inner);
        };
        node.holds.replace(inner)
    }

    /// The nodes holding the vault view's inode `inner`.
    pub(super) fn holders_of(&self, inner: u64) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.holds == Some(inner))
            .map(|(&ino, _)| ino)
            .collect()
    }

    /// Every node, and every `(parent inode, name)` entry the kernel may have cached.
    pub(super) fn all_names(&self) -> (Vec<u64>, Vec<(u64, String)>) {
        let inodes = self.nodes.keys().copied().collect();
        let entries = self
            .nodes
            .values()
            .filter_map(|node| {
                let (parent, name) = match &node.key {
                    TreeKey::Path(path) if path.is_empty() => return None,
                    TreeKey::Path(path) => match path.rsplit_once('/') {
                        Some((parent, name)) => (TreeKey::Path(parent.to_owned()), name),
                        None => (TreeKey::Path(String::new()), path.as_str()),
                    },
                    TreeKey::DirFile(dir, file) => (TreeKey::Path(dir.clone()), file.as_str()),
                };
                Some((*self.by_key.get(&parent)?, name.to_owned()))
            })
            .collect();
        (inodes, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_one_lookup_of_its_secret_and_gives_it_back_when_forgotten() {
        let mut nodes = TreeNodes::default();
        let key = TreeKey::Path("nginx/tls.crt".into());
        let ino = nodes.ino_for(key.clone());
        assert_eq!(nodes.ino_for(key.clone()), ino);
        nodes.remember(ino);
        nodes.remember(ino);
        assert_eq!(nodes.hold(ino, 40), None, "first hold is kept");
        assert_eq!(
            nodes.hold(ino, 40),
            Some(40),
            "the same inode again: give one back"
        );
        assert_eq!(
            nodes.hold(ino, 41),
            Some(40),
            "another inode: the old one goes back"
        );
        assert_eq!(nodes.holders_of(41), vec![ino]);
        assert_eq!(nodes.forget(ino, 1), None, "still held by the kernel");
        assert_eq!(
            nodes.forget(ino, 1),
            Some(41),
            "forgotten: its hold goes back"
        );
        assert_eq!(nodes.key_of(ino), None);
        assert_eq!(nodes.hold(ino, 42), Some(42), "a gone node holds nothing");
        assert_ne!(nodes.ino_for(key), ino, "numbers are not reused");
        assert_eq!(nodes.forget(ROOT_INO, 5), None);
        assert!(nodes.key_of(ROOT_INO).is_some(), "the root stays");
    }

    #[test]
    fn all_names_gives_each_cached_entry_with_its_parent() {
        let mut nodes = TreeNodes::default();
        let dir = nodes.ino_for(TreeKey::Path("config".into()));
        nodes.ino_for(TreeKey::DirFile("config".into(), "DB_PASSWORD".into()));
        nodes.ino_for(TreeKey::Path("config/x".into()));
        let (inodes, mut entries) = nodes.all_names();
        entries.sort();
        assert_eq!(inodes.len(), 4);
        assert_eq!(
            entries,
            vec![
                (ROOT_INO, "config".to_owned()),
                (dir, "DB_PASSWORD".to_owned()),
                (dir, "x".to_owned())
            ]
        );
    }
}
