//! Metric handles kept per label set, so a hot path records with one read-locked map lookup
//! and an `Arc` clone instead of building, hashing and looking up a metric key (and
//! allocating its labels) on every event. Label sets are bounded, so the maps are too.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

/// Handles (`metrics::Counter`, `Histogram`, tuples of them) by label key.
pub struct Handles<K, V> {
    map: RwLock<HashMap<K, V>>,
}

impl<K, V> Default for Handles<K, V> {
    fn default() -> Self {
        Handles {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V: Clone> Handles<K, V> {
    /// The handles of `key`, made by `make` (which also gives the owned key) the first time.
    pub fn get<Q>(&self, key: &Q, make: impl FnOnce() -> (K, V)) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.map.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return v.clone();
        }
        let (owned, v) = make();
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(owned)
            .or_insert(v)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_then_found() {
        let cache: Handles<String, u32> = Handles::default();
        let mut made = 0;
        for _ in 0..3 {
            let v = cache.get("a", || {
                made += 1;
                ("a".to_owned(), 7)
            });
            assert_eq!(v, 7);
        }
        assert_eq!(made, 1);
        assert_eq!(cache.get("b", || ("b".to_owned(), 8)), 8);
    }
}
