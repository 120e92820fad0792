//! Statistics: self and total time of every span per (service, operation) and per (service,
//! pod) ([`Groups`]), kept as `u32` while the values fit ([`Values`]), and written as mean and
//! quantiles to `operations.csv` and `pods.csv` ([`write_stats`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::hash::{fx_hash, place, slot_of, FxMap, NONE};
use super::json::same;
use super::STAT_COLUMNS;
use crate::error::Result;
use crate::output::{csv_field, fmt_f64};

/// The values of one statistic column: `u32` while every value fits (half the memory; µs
/// durations fit for 71 minutes), `u64` from the first one that does not.
pub(crate) enum Values {
    Small(Vec<u32>),
    Big(Vec<u64>),
}

impl Default for Values {
    fn default() -> Self {
        Values::Small(Vec::new())
    }
}

impl Values {
    #[inline(always)]
    pub(crate) fn push(&mut self, v: u64) {
        if let Values::Small(x) = self {
            if v <= u32::MAX as u64 {
                x.push(v as u32);
                return;
            }
        }
        self.push_big(v);
    }

    #[cold]
    fn push_big(&mut self, v: u64) {
        if let Values::Small(x) = self {
            *self = Values::Big(x.iter().map(|&v| u64::from(v)).collect());
        }
        if let Values::Big(x) = self {
            x.push(v);
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Values::Small(x) => x.len(),
            Values::Big(x) => x.len(),
        }
    }

    /// Mean and the p50, p90, p95 and p99 quantiles (see [`describe`]).
    pub(crate) fn describe(&mut self) -> (f64, [f64; 4]) {
        match self {
            Values::Small(x) => describe(x),
            Values::Big(x) => describe(x),
        }
    }
}

/// Quantiles reported in the statistics tables.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.95, 0.99];

/// Mean and [`QUANTILES`] of `v` (not empty), equal to the bit to sorting `v`, converting it to
/// `f64`, summing in order and interpolating with [`crate::output::quantile_sorted`]; `v` is
/// reordered. Only the ranks the quantiles need are selected (O(n), where the sort was
/// O(n log n) and the largest cost of `finish`), and the sum is taken in integers: while it is
/// below 2^53 every partial sum in `f64` is exact in any order, so the mean is the same; above
/// that, the sorted `f64` sum is taken as before.
pub(crate) fn describe<T: Copy + Ord + Into<u64>>(v: &mut [T]) -> (f64, [f64; 4]) {
    let n = v.len();
    let total: u128 = v.iter().map(|&x| u128::from(x.into())).sum();
    let mean = if total < (1u128 << 53) {
        total as f64 / n.max(1) as f64
    } else {
        v.sort_unstable();
        v.iter().map(|&x| x.into() as f64).sum::<f64>() / n.max(1) as f64
    };
    let last = n.saturating_sub(1) as f64;
    let mut ranks: Vec<usize> = QUANTILES
        .iter()
        .flat_map(|&q| {
            let p = q.clamp(0.0, 1.0) * last;
            [p.floor() as usize, p.ceil() as usize]
        })
        .collect();
    ranks.sort_unstable();
    ranks.dedup();
    // Each selection leaves the larger values after the rank, so the next one searches only those.
    let mut from = 0;
    for &r in &ranks {
        if r >= from && r < n {
            v[from..].select_nth_unstable(r - from);
            from = r + 1;
        }
    }
    let q = QUANTILES.map(|q| {
        if n == 0 {
            return f64::NAN;
        }
        let p = q.clamp(0.0, 1.0) * last;
        let (lo, hi) = (p.floor() as usize, p.ceil() as usize);
        let (a, b) = (v[lo].into() as f64, v[hi].into() as f64);
        a + (b - a) * (p - lo as f64)
    });
    (mean, q)
}

#[derive(Default)]
struct Stat {
    self_us: Values,
    total_us: Values,
    errors: u64,
}

/// The two strings naming a group (service and operation, or service and pod).
type GroupKey = (Box<[u8]>, Box<[u8]>);

/// Statistics keyed by two strings (service and operation, or service and pod). The first key
/// is resolved once per process and trace, so a span costs one lookup of the second key, in a
/// small open-addressing table whose keys are compared with [`same`]: the `HashMap` it replaced
/// compared every hit with a `memcmp` call (operation names are 10–30 bytes), which with the
/// map's own probing was 4% of the run in profiles.
#[derive(Default)]
pub(crate) struct Groups {
    first: FxMap<Box<[u8]>, u32>,
    /// Group ids ([`NONE`]: free), at the slot of their hash; at most half full.
    slots: Vec<u32>,
    /// Per group: the hash of its (first id, second key), and its first id.
    hashes: Vec<(u64, u32)>,
    keys: Vec<GroupKey>,
    stats: Vec<Stat>,
}

impl Groups {
    /// The id of first key `a`.
    pub(crate) fn first(&mut self, a: &[u8]) -> u32 {
        if let Some(&i) = self.first.get(a) {
            return i;
        }
        let i = self.first.len() as u32;
        self.first.insert(a.into(), i);
        i
    }

    /// The statistics of (`a`, `b`), where `first` is the id of `a`.
    #[inline]
    pub(crate) fn get(&mut self, first: u32, a: &[u8], b: &[u8]) -> u32 {
        let h = fx_hash(b) ^ u64::from(first).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        if !self.slots.is_empty() {
            let mask = self.slots.len() - 1;
            let mut at = slot_of(h) & mask;
            loop {
                let g = self.slots[at];
                if g == NONE {
                    break;
                }
                if self.hashes[g as usize] == (h, first) && same(&self.keys[g as usize].1, b) {
                    return g;
                }
                at = (at + 1) & mask;
            }
        }
        self.insert(h, first, a, b)
    }

    #[cold]
    fn insert(&mut self, h: u64, first: u32, a: &[u8], b: &[u8]) -> u32 {
        let g = self.stats.len() as u32;
        self.hashes.push((h, first));
        self.keys.push((a.into(), b.into()));
        self.stats.push(Stat::default());
        if self.slots.len() < 2 * self.stats.len() {
            // Rebuild at twice the size (or the first 64 slots).
            let size = (4 * self.stats.len()).next_power_of_two().max(64);
            self.slots.clear();
            self.slots.resize(size, NONE);
            for (i, &(h, _)) in self.hashes.iter().enumerate() {
                place(&mut self.slots, h, i as u32);
            }
        } else {
            place(&mut self.slots, h, g);
        }
        g
    }

    #[inline]
    pub(crate) fn add(&mut self, i: u32, self_us: u64, total_us: u64, error: bool) {
        let st = &mut self.stats[i as usize];
        st.self_us.push(self_us);
        st.total_us.push(total_us);
        st.errors += error as u64;
    }
}

pub(crate) fn write_stats(
    dir: &Path,
    name: &str,
    keys: &str,
    mut groups: Groups,
) -> Result<PathBuf> {
    let mut order: Vec<usize> = (0..groups.keys.len()).collect();
    order.sort_by(|&a, &b| groups.keys[a].cmp(&groups.keys[b]));
    crate::output::write_atomic(dir, name, |w| {
        writeln!(w, "{keys},{STAT_COLUMNS}")?;
        for i in order {
            let (a, b) = &groups.keys[i];
            let st = &mut groups.stats[i];
            csv_field(w, a)?;
            w.write_all(b",")?;
            csv_field(w, b)?;
            write!(w, ",{},{}", st.self_us.len(), st.errors)?;
            for v in [&mut st.self_us, &mut st.total_us] {
                let (mean, q) = v.describe();
                // Statistics of µs values are printed to the nanosecond: no float noise in the files.
                let ns = |v: f64| fmt_f64((v * 1000.0).round() / 1000.0);
                write!(w, ",{}", ns(mean))?;
                for x in q {
                    write!(w, ",{}", ns(x))?;
                }
            }
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests;
