//! Generational arenas: a `slab::Slab` whose keys carry a generation, so a
//! stale id (a timer or membership that outlived its object) never reaches
//! an object that later took the same slot.
//!
//! Invariant: every live entry has a generation no other entry of this arena
//! ever had. Lookups are O(1); a stale id answers `None`.

use std::fmt;
use std::marker::PhantomData;

/// An id into an [`Arena<T>`]: slot index plus generation.
pub struct Id<T> {
    idx: u32,
    gen: u32,
    _t: PhantomData<fn() -> T>,
}

impl<T> Id<T> {
    /// The slab index (a connection's is also its `mio::Token`).
    pub fn index(self) -> usize {
        self.idx as usize
    }

    /// The id as one number (index and generation), for naming an object to
    /// another process; [`Id::from_bits`] reads it back.
    pub fn to_bits(self) -> u64 {
        (u64::from(self.gen) << 32) | u64::from(self.idx)
    }

    pub fn from_bits(b: u64) -> Self {
        Id {
            idx: b as u32,
            gen: (b >> 32) as u32,
            _t: PhantomData,
        }
    }
}

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Id<T> {}
impl<T> PartialEq for Id<T> {
    fn eq(&self, o: &Self) -> bool {
        self.idx == o.idx && self.gen == o.gen
    }
}
impl<T> Eq for Id<T> {}
impl<T> std::hash::Hash for Id<T> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.idx.hash(h);
        self.gen.hash(h);
    }
}
impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.idx, self.gen)
    }
}

struct Entry<T> {
    gen: u32,
    val: T,
}

/// A slab of `T` addressed by generational [`Id`]s. Ids are `Id<K>`: `K` is
/// `T` itself unless a marker type is given, so code that must not name `T`
/// (the room core, for client connections) can still hold typed ids.
pub struct Arena<T, K = T> {
    slab: slab::Slab<Entry<T>>,
    next_gen: u32,
    _k: PhantomData<fn() -> K>,
}

impl<T, K> Default for Arena<T, K> {
    fn default() -> Self {
        Arena {
            slab: slab::Slab::new(),
            next_gen: 1,
            _k: PhantomData,
        }
    }
}

impl<T, K> Arena<T, K> {
    pub fn insert(&mut self, val: T) -> Id<K> {
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let idx = self.slab.insert(Entry { gen, val });
        Id {
            idx: idx as u32,
            gen,
            _t: PhantomData,
        }
    }

    /// The id that would be handed out for the next insert's slot, with the
    /// generation it will get; lets a value know its own id before insertion.
    pub fn next_id(&self) -> Id<K> {
        Id {
            idx: self.slab.vacant_key() as u32,
            gen: self.next_gen,
            _t: PhantomData,
        }
    }

    pub fn get(&self, id: Id<K>) -> Option<&T> {
        match self.slab.get(id.idx as usize) {
            Some(e) if e.gen == id.gen => Some(&e.val),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, id: Id<K>) -> Option<&mut T> {
        match self.slab.get_mut(id.idx as usize) {
            Some(e) if e.gen == id.gen => Some(&mut e.val),
            _ => None,
        }
    }

    /// The live id at a slab index (for mio tokens, which carry no generation).
    pub fn id_at(&self, idx: usize) -> Option<Id<K>> {
        self.slab.get(idx).map(|e| Id {
            idx: idx as u32,
            gen: e.gen,
            _t: PhantomData,
        })
    }

    /// The live entry at a slab index, with its id.
    pub fn at(&self, idx: usize) -> Option<(Id<K>, &T)> {
        self.slab.get(idx).map(|e| {
            (
                Id {
                    idx: idx as u32,
                    gen: e.gen,
                    _t: PhantomData,
                },
                &e.val,
            )
        })
    }

    pub fn remove(&mut self, id: Id<K>) -> Option<T> {
        match self.slab.get(id.idx as usize) {
            Some(e) if e.gen == id.gen => Some(self.slab.remove(id.idx as usize).val),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (Id<K>, &T)> {
        self.slab.iter().map(|(idx, e)| {
            (
                Id {
                    idx: idx as u32,
                    gen: e.gen,
                    _t: PhantomData,
                },
                &e.val,
            )
        })
    }

    pub fn ids(&self) -> Vec<Id<K>> {
        self.iter().map(|(id, _)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_id_misses_reused_slot() {
        let mut a: Arena<i32> = Arena::default();
        let x = a.insert(1);
        assert_eq!(a.remove(x), Some(1));
        let y = a.insert(2);
        assert_eq!(x.index(), y.index());
        assert_eq!(a.get(x), None);
        assert_eq!(a.remove(x), None);
        assert_eq!(a.get(y), Some(&2));
    }

    #[test]
    fn next_id_predicts_insert() {
        let mut a: Arena<i32> = Arena::default();
        a.insert(0);
        let p = a.next_id();
        assert_eq!(a.insert(7), p);
    }

    #[test]
    fn ids_can_be_keyed_by_a_marker() {
        enum Mark {}
        let mut a: Arena<String, Mark> = Arena::default();
        let id: Id<Mark> = a.insert("x".into());
        assert_eq!(a.get(id).map(|s| s.as_str()), Some("x"));
        assert_eq!(a.remove(id).as_deref(), Some("x"));
        assert!(a.get(id).is_none());
    }
}
