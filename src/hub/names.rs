//! Room names: stored once, in the room, inline when short, and the index
//! that finds a room by name without a second copy of it.
//!
//! [`RoomName`] keeps a name of up to [`INLINE`] bytes inside itself (24
//! bytes, no heap block) and a longer one (room names go up to 64 bytes) in a
//! `Box<str>`. [`NameIndex`] is a hash table of arena slot indexes (4 bytes
//! and a control byte per bucket) hashed by the name their entry holds: a
//! lookup hashes the name asked for and compares it with the names of the
//! entries whose hash tag matches.
//!
//! Invariants of a [`NameIndex`] over an [`Arena`]: each slot index it holds
//! is a live entry of the arena, held once, under the hash of that entry's
//! name; names are unique among the indexed entries. The caller keeps them:
//! [`NameIndex::insert`] after the entry is in the arena (its name never
//! changes while indexed), [`NameIndex::remove`] when it leaves (before its
//! slot is reused). Lookups, inserts and removals are O(1) on average.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::marker::PhantomData;
use std::ops::Deref;

use hashbrown::hash_table::{Entry, HashTable};

use crate::arena::{Arena, Id};

/// Longest name kept inline (one byte of the 24 is the length, one the
/// variant's tag).
pub const INLINE: usize = 22;

/// A name stored once: inline up to [`INLINE`] bytes, else on the heap.
/// Derefs to `str`.
#[derive(Clone)]
pub struct RoomName(Repr);

#[derive(Clone)]
enum Repr {
    /// `len <= INLINE`.
    Inline {
        len: u8,
        buf: [u8; INLINE],
    },
    Heap(Box<str>),
}

impl RoomName {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: `Repr` is private and `From<&str>` is the only way to
            // make an inline name: its bytes are a whole `str`'s, copied
            // unchanged, so they are valid UTF-8. (Checking them again
            // showed at 2 % of the server's instructions per delivery: the
            // name is read for every message a room sends.)
            Repr::Inline { .. } => unsafe { std::str::from_utf8_unchecked(self.as_bytes()) },
            Repr::Heap(s) => s,
        }
    }

    /// Its bytes, without the UTF-8 check `as_str` makes (what the index
    /// hashes and compares).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            Repr::Heap(s) => s.as_bytes(),
        }
    }

    /// Whether it holds a heap block.
    pub fn is_heap(&self) -> bool {
        matches!(self.0, Repr::Heap(_))
    }
}

impl From<&str> for RoomName {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            RoomName(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            RoomName(Repr::Heap(s.into()))
        }
    }
}

impl Deref for RoomName {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for RoomName {
    fn eq(&self, o: &Self) -> bool {
        self.as_str() == o.as_str()
    }
}
impl Eq for RoomName {}

impl PartialEq<str> for RoomName {
    fn eq(&self, o: &str) -> bool {
        self.as_str() == o
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a [`NameIndex`] finds its entries by: the bytes of their name.
pub trait Named {
    fn name(&self) -> &[u8];
}

/// Entries of an `Arena<T>` by name; see the module doc for invariants.
/// `S` hashes the names (tests use a constant one).
pub struct NameIndex<T, S = RandomState> {
    table: HashTable<u32>,
    hasher: S,
    _t: PhantomData<fn() -> T>,
}

impl<T, S: Default> Default for NameIndex<T, S> {
    fn default() -> Self {
        NameIndex {
            table: HashTable::new(),
            hasher: S::default(),
            _t: PhantomData,
        }
    }
}

impl<T: Named, S: BuildHasher> NameIndex<T, S> {
    /// The entry named `name`.
    pub fn get(&self, arena: &Arena<T>, name: &str) -> Option<Id<T>> {
        let name = name.as_bytes();
        let idx = *self.table.find(self.hasher.hash_one(name), |&i| {
            arena.at(i as usize).is_some_and(|(_, v)| v.name() == name)
        })?;
        arena.id_at(idx as usize)
    }

    pub fn contains(&self, arena: &Arena<T>, name: &str) -> bool {
        self.get(arena, name).is_some()
    }

    /// Indexes the live entry `id` under its own name. False, and nothing
    /// changes, when `id` is stale or an indexed entry has that name.
    pub fn insert(&mut self, arena: &Arena<T>, id: Id<T>) -> bool {
        let Some(v) = arena.get(id) else {
            return false;
        };
        let Ok(idx) = u32::try_from(id.index()) else {
            return false;
        };
        let name = v.name();
        let hasher = &self.hasher;
        let entry = self.table.entry(
            hasher.hash_one(name),
            |&i| arena.at(i as usize).is_some_and(|(_, o)| o.name() == name),
            // Rehashing: every held index is live (the module invariant).
            |&i| {
                arena
                    .at(i as usize)
                    .map_or(0, |(_, o)| hasher.hash_one(o.name()))
            },
        );
        match entry {
            Entry::Occupied(_) => false,
            Entry::Vacant(e) => {
                e.insert(idx);
                true
            }
        }
    }

    /// Drops entry `id`, indexed under `name`: call it when the entry leaves
    /// the arena (before or after `Arena::remove`, before its slot is
    /// reused). False when it was not indexed.
    pub fn remove(&mut self, arena: &Arena<T>, name: &str, id: Id<T>) -> bool {
        let name = name.as_bytes();
        let idx = id.index();
        // The slot is vacant (the entry already left) or still holds `id`;
        // one held by a later entry is that entry's, not ours.
        let ours = |i: &u32| {
            *i as usize == idx
                && arena
                    .at(idx)
                    .is_none_or(|(cur, v)| cur == id && v.name() == name)
        };
        match self.table.find_entry(self.hasher.hash_one(name), ours) {
            Ok(e) => {
                e.remove();
                true
            }
            Err(_) => false,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Buckets allocated (for memory accounting).
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(RoomName);
    impl Named for R {
        fn name(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }

    fn r(s: &str) -> R {
        R(s.into())
    }

    #[test]
    fn name_sizes() {
        assert_eq!(std::mem::size_of::<RoomName>(), 24);
        assert_eq!(std::mem::size_of::<Option<RoomName>>(), 24);
    }

    #[test]
    fn inline_and_heap_names() {
        for n in [0, 1, INLINE - 1, INLINE, INLINE + 1, 63, 64, 200] {
            let s = "x".repeat(n);
            let name = RoomName::from(s.as_str());
            assert_eq!(&*name, s.as_str(), "len {n}");
            assert_eq!(name.as_bytes(), s.as_bytes(), "len {n}");
            assert_eq!(name.len(), n);
            assert_eq!(name.is_heap(), n > INLINE, "len {n}");
            assert_eq!(name.clone(), name);
            assert_eq!(format!("{name:?}"), format!("{s:?}"));
            assert_eq!(name.to_string(), s);
        }
        // Every byte of a full-length name is kept, as is any UTF-8.
        let s: String = (0..64).map(|i| (b'!' + i) as char).collect();
        assert_eq!(&*RoomName::from(s.as_str()), s);
        assert_eq!(&*RoomName::from("é-ü-€"), "é-ü-€");
        assert_ne!(RoomName::from("a"), RoomName::from("ab"));
        assert!(RoomName::from("ab").eq("ab"));
    }

    #[test]
    fn index_finds_inserts_and_refuses_duplicates() {
        let mut a = Arena::default();
        let mut ix: NameIndex<R> = NameIndex::default();
        let long = "L".repeat(64);
        let ids: Vec<_> = ["a", "b", &long, &"s".repeat(INLINE)]
            .iter()
            .map(|n| {
                let id = a.insert(r(n));
                assert!(ix.insert(&a, id));
                id
            })
            .collect();
        assert_eq!(ix.len(), 4);
        assert_eq!(ix.get(&a, "a"), Some(ids[0]));
        assert_eq!(ix.get(&a, &long), Some(ids[2]));
        assert_eq!(ix.get(&a, &"s".repeat(INLINE)), Some(ids[3]));
        assert_eq!(ix.get(&a, "c"), None);
        assert_eq!(ix.get(&a, &"L".repeat(63)), None);
        // A second entry with a taken name, or the same entry twice: refused.
        let dup = a.insert(r("a"));
        assert!(!ix.insert(&a, dup));
        assert!(!ix.insert(&a, ids[1]));
        assert_eq!(ix.get(&a, "a"), Some(ids[0]));
        assert_eq!(ix.len(), 4);
        // A stale id is not indexed.
        a.remove(dup);
        assert!(!ix.insert(&a, dup));
    }

    #[test]
    fn remove_then_reinsert_in_a_reused_slot() {
        let mut a = Arena::default();
        let mut ix: NameIndex<R> = NameIndex::default();
        let x = a.insert(r("room"));
        assert!(ix.insert(&a, x));
        // Removed from the arena first, then from the index (as close_room).
        let gone = a.remove(x).map(|v| v.0);
        assert!(ix.remove(&a, "room", x));
        assert_eq!(gone.as_deref(), Some("room"));
        assert!(!ix.remove(&a, "room", x));
        assert_eq!(ix.get(&a, "room"), None);
        // The slot comes back with a new generation and another name ...
        let y = a.insert(r("other"));
        assert_eq!(x.index(), y.index());
        assert!(ix.insert(&a, y));
        // ... which a stale removal under either name leaves alone.
        assert!(!ix.remove(&a, "room", x));
        assert!(!ix.remove(&a, "other", x));
        assert_eq!(ix.get(&a, "other"), Some(y));
        // The old name again, in a new slot; then removed before the arena.
        let z = a.insert(r("room"));
        assert!(ix.insert(&a, z));
        assert_eq!(ix.get(&a, "room"), Some(z));
        assert!(ix.remove(&a, "room", z));
        assert_eq!(ix.get(&a, "room"), None);
        assert!(a.remove(z).is_some());
        assert_eq!(ix.len(), 1);
    }

    /// Every name hashes alike: lookups, refusals and removals fall back on
    /// comparing names (and slots), through growth and rehashing.
    #[test]
    fn collisions_compare_names() {
        #[derive(Default)]
        struct Same;
        impl BuildHasher for Same {
            type Hasher = Fixed;
            fn build_hasher(&self) -> Fixed {
                Fixed
            }
        }
        struct Fixed;
        impl std::hash::Hasher for Fixed {
            fn finish(&self) -> u64 {
                42
            }
            fn write(&mut self, _: &[u8]) {}
        }
        let mut a = Arena::default();
        let mut ix: NameIndex<R, Same> = NameIndex::default();
        let names: Vec<String> = (0..300).map(|i| format!("n{i}")).collect();
        let ids: Vec<_> = names
            .iter()
            .map(|n| {
                let id = a.insert(r(n));
                assert!(ix.insert(&a, id));
                id
            })
            .collect();
        for (n, &id) in names.iter().zip(&ids) {
            assert_eq!(ix.get(&a, n), Some(id));
            let dup = a.insert(r(n));
            assert!(!ix.insert(&a, dup));
            a.remove(dup);
        }
        assert_eq!(ix.get(&a, "n300"), None);
        // Every other one out; the rest still found.
        for (n, &id) in names.iter().zip(&ids).step_by(2) {
            assert!(a.remove(id).is_some());
            assert!(ix.remove(&a, n, id));
        }
        for (k, (n, &id)) in names.iter().zip(&ids).enumerate() {
            assert_eq!(ix.get(&a, n), (k % 2 == 1).then_some(id));
        }
        assert_eq!(ix.len(), 150);
    }

    /// Many entries, removed and added in turns (the table grows, rehashes
    /// and reuses slots): the index always agrees with the arena.
    #[test]
    fn churn_agrees_with_the_arena() {
        let mut a = Arena::default();
        let mut ix: NameIndex<R> = NameIndex::default();
        let mut live: Vec<(String, Id<R>)> = Vec::new();
        let mut next = 0u64;
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if live.is_empty() || !rng.is_multiple_of(3) {
                let n = format!("r{next}-{}", "z".repeat((next % 50) as usize));
                next += 1;
                let id = a.insert(r(&n));
                assert!(ix.insert(&a, id));
                live.push((n, id));
            } else {
                let (n, id) = live.swap_remove((rng as usize / 3) % live.len());
                assert!(a.remove(id).is_some());
                assert!(ix.remove(&a, &n, id));
                assert_eq!(ix.get(&a, &n), None);
            }
        }
        assert_eq!(ix.len(), live.len());
        assert_eq!(a.len(), live.len());
        for (n, id) in &live {
            assert_eq!(ix.get(&a, n), Some(*id));
        }
    }
}
