//! The set of node kinds a run can use.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::node::{Datasets, NodeKind};

/// Every known node kind by name, plus the named datasets nodes may ask for.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, Arc<dyn NodeKind>>,
    /// Named datasets (`builtin:NAME`).
    pub datasets: Datasets,
}

/// A kind name registered twice.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("node kind `{0}` is already registered")]
pub struct DuplicateKind(pub String);

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a kind.
    ///
    /// # Errors
    /// [`DuplicateKind`] when a kind of that name exists.
    pub fn register(&mut self, kind: Arc<dyn NodeKind>) -> Result<(), DuplicateKind> {
        let name = kind.name().to_string();
        if self.kinds.contains_key(&name) {
            return Err(DuplicateKind(name));
        }
        self.kinds.insert(name, kind);
        Ok(())
    }

    /// The kind called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn NodeKind>> {
        self.kinds.get(name)
    }

    /// All kinds, sorted by name.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn NodeKind>> {
        self.kinds.values()
    }

    /// All kind names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish()
    }
}
