//! Hashing for the per-span and per-trace lookups: FxHash ([`Fx`]), the maps and sets built on
//! it, and the small open-addressing table of one trace's span IDs ([`SpanIndex`]) with the
//! slot helpers the statistics' group table (`stats.rs`) shares.

use std::collections::{HashMap, HashSet};

use super::jaeger::TraceView;
use super::json::same;

/// FxHash (rustc's hasher): the group maps, the span-ID index and the set of trace IDs are
/// looked up per span or trace with short trusted keys, where std's SipHash showed in profiles;
/// no hasher crate is in the workspace, and this is the whole algorithm.
#[derive(Default, Clone, Copy)]
pub(crate) struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fx>>;
pub(crate) type FxSet<K> = HashSet<K, std::hash::BuildHasherDefault<Fx>>;

/// FxHash of one byte string.
#[inline]
pub(crate) fn fx_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let mut h = Fx::default();
    h.write(bytes);
    h.finish()
}

pub(crate) const NONE: u32 = u32::MAX;

/// Span IDs of one trace → index: a small open-addressing table. When an ID occurs twice in a
/// trace, references to it resolve through the sorted order and binary search that this table
/// replaced, so such traces give the same rows as before.
#[derive(Default)]
pub(crate) struct SpanIndex {
    table: Vec<u32>,
    sorted: Vec<u32>,
    duplicates: bool,
}

impl SpanIndex {
    pub(crate) fn build(&mut self, v: &TraceView<'_>) {
        let spans = &v.t.spans;
        let size = (spans.len() * 2).next_power_of_two().max(8);
        let mask = size - 1;
        self.table.clear();
        self.table.resize(size, NONE);
        self.duplicates = false;
        for (i, sp) in spans.iter().enumerate() {
            let id = v.get(sp.id);
            let mut h = slot(id) & mask;
            loop {
                let e = self.table[h];
                if e == NONE {
                    self.table[h] = i as u32;
                    break;
                }
                if same(v.get(spans[e as usize].id), id) {
                    self.duplicates = true;
                    break;
                }
                h = (h + 1) & mask;
            }
        }
        if self.duplicates {
            self.sorted.clear();
            self.sorted.extend(0..spans.len() as u32);
            self.sorted.sort_unstable_by(|&a, &b| {
                v.get(spans[a as usize].id).cmp(v.get(spans[b as usize].id))
            });
        }
    }

    /// The span with ID `id`, or [`NONE`].
    #[inline]
    pub(crate) fn find(&self, v: &TraceView<'_>, id: &[u8]) -> u32 {
        let spans = &v.t.spans;
        if self.duplicates {
            return self
                .sorted
                .binary_search_by(|&i| v.get(spans[i as usize].id).cmp(id))
                .map_or(NONE, |p| self.sorted[p]);
        }
        let mask = self.table.len() - 1;
        let mut h = slot(id) & mask;
        loop {
            let e = self.table[h];
            if e == NONE || same(v.get(spans[e as usize].id), id) {
                return e;
            }
            h = (h + 1) & mask;
        }
    }
}

/// Puts group `g` with hash `h` in the first free slot from its own (linear probing; `slots` is
/// a power of two long and never full).
pub(crate) fn place(slots: &mut [u32], h: u64, g: u32) {
    let mask = slots.len() - 1;
    let mut at = slot_of(h) & mask;
    while slots[at] != NONE {
        at = (at + 1) & mask;
    }
    slots[at] = g;
}

/// Table slot of a span ID.
#[inline]
fn slot(id: &[u8]) -> usize {
    slot_of(fx_hash(id))
}

/// Table slot of a hash (the high bits of FxHash are its good ones).
#[inline(always)]
pub(crate) fn slot_of(h: u64) -> usize {
    (h ^ (h >> 29)) as usize
}
