//! Intended send times: when each request of an arrival process is *due*, for a constant or
//! time-varying offered rate ([`RateProfile`]) and a gap distribution ([`Distribution`]). Pure
//! arithmetic, no I/O and no clock: the engine asks a [`Schedule`] for the next due time and
//! sleeps until then; corrected latency is measured from that time.
//!
//! # The model: unit gaps and a time change
//!
//! A run offers `r(t)` requests/s in total at `t` seconds after its start. Write
//! `Λ(t) = ∫₀ᵗ r(s) ds` for the requests offered up to `t` (closed form: linear on constant
//! pieces, quadratic on ramps). The load is split over several arrival processes (one per
//! connection in wrk2's model, one per thread in the open model); a process carrying `share` of
//! the total sends its k-th request at
//!
//! ```text
//! t_k = phase + Λ⁻¹(S_k / share),    S_0 = 0,  S_k = E_1 + ... + E_k
//! ```
//!
//! where the `E_i` are independent *unit-mean* gaps drawn from the [`Distribution`]. In
//! "operational time" `Λ(t)` the process has mean gap `1/share`, so in real time its mean rate
//! is `share * r(t)` at every `t` (a ramp is followed, not just its average), and the processes
//! together offer `r(t)`. With [`Distribution::Exp`] this is exactly a (non-homogeneous) Poisson
//! process; with [`Distribution::Fixed`] and a constant rate it is wrk2's grid
//! `phase + k / (rate * share)`, bit for bit. A `Λ` that is flat (rate 0 for a while) has no
//! arrivals there: `Λ⁻¹(x)` is the first `t` with `Λ(t) > x`, so a due time that falls in a
//! pause moves to its end. Every process starts with an arrival at its `phase`, as wrk2's grid
//! does (and where the rate is 0 at the start, at the end of that pause).
//!
//! # Distributions
//!
//! `-D` takes the names of DeathStarBench's wrk2 fork (`-D fixed|exp|norm|zipf`). All gaps
//! have mean 1 in operational time, so the mean rate is the same for all four:
//!
//! * `fixed` (default): every gap is 1 (wrk2).
//! * `exp`: exponential gaps, mean 1 (the fork: `-ln(U) * interval`): Poisson arrivals.
//! * `norm`: normal with mean 1 and standard deviation [`NORM_SD`] (0.25), redrawn when
//!   negative (a normal truncated at 0; the truncation moves the mean up by 3.4e-5, which is
//!   ignored). The fork parses `norm` but sends with a zero gap (as fast as it can); this is
//!   the documented choice here instead.
//! * `zipf`: as the fork, a rank `k` in `1..=`[`ZIPF_N`] (100) with probability `∝ k^-`[`ZIPF_S`]
//!   (3), scaled by `1 / E[k]` (`E[k] ≈ 1.36`) so the mean gap is 1: most gaps are short (83 %
//!   are `1/E[k] ≈ 0.73`), a few are long (up to 73 mean gaps): bursty but mean-preserving.
//!
//! # Seeds
//!
//! Random gaps come from [`rand::rngs::SmallRng`] seeded from a `u64`. A run has one seed
//! (`--seed`, default [`DEFAULT_SEED`]); the engine gives each arrival process its own stream
//! with [`stream_seed`]`(run_seed, process_index)`. The same seed, spec and aefm-load build
//! give the same schedule (`SmallRng`'s algorithm may change with the `rand` version).
//! Processes of a distributed run (several aefm-load instances) need different seeds, or their
//! random gaps coincide.

mod profile;

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Exp1, Normal, Zipf};

use profile::Segment;
pub use profile::{Point, ProfileError, RateProfile, Shape};

/// Standard deviation of [`Distribution::Norm`]'s gaps, as a fraction of the mean gap.
pub const NORM_SD: f64 = 0.25;
/// Number of ranks of [`Distribution::Zipf`] (DeathStarBench's wrk2 fork: 100).
pub const ZIPF_N: u32 = 100;
/// Exponent of [`Distribution::Zipf`] (the fork: 3).
pub const ZIPF_S: f64 = 3.0;
/// The seed of a run that names none (`--seed`): runs are reproducible by default.
pub const DEFAULT_SEED: u64 = 0;

/// The distribution of the gaps between consecutive sends of one arrival process (`-D`). All
/// have mean 1 / rate; see the [module docs](self).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Distribution {
    /// Every gap equal: wrk2's constant-throughput grid.
    #[default]
    Fixed,
    /// Exponential gaps: Poisson arrivals.
    Exp,
    /// Normal gaps, standard deviation [`NORM_SD`] of the mean, truncated at 0.
    Norm,
    /// Zipf-ranked gaps (`k^-3`, `k <= 100`) scaled to the mean: bursty.
    Zipf,
}

impl Distribution {
    /// The `-D` name.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Fixed => "fixed",
            Distribution::Exp => "exp",
            Distribution::Norm => "norm",
            Distribution::Zipf => "zipf",
        }
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Distribution {
    type Err = ProfileError;

    /// Reads a `-D` name (the fork silently keeps `fixed` for an unknown name; this refuses).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fixed" => Ok(Distribution::Fixed),
            "exp" => Ok(Distribution::Exp),
            "norm" => Ok(Distribution::Norm),
            "zipf" => Ok(Distribution::Zipf),
            _ => Err(ProfileError(format!(
                "invalid distribution '{s}' (expected fixed, exp, norm or zipf)"
            ))),
        }
    }
}

/// The seed of arrival process `stream` of a run seeded with `seed`: distinct, well-mixed
/// seeds for neighbouring indexes (SplitMix64 finalizer).
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    splitmix64(splitmix64(seed) ^ stream)
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Draws unit-mean gaps.
#[derive(Clone, Debug)]
enum Sampler {
    Fixed,
    Exp,
    Norm(Normal<f64>),
    Zipf { zipf: Zipf<f64>, inv_mean: f64 },
}

impl Sampler {
    fn new(d: Distribution) -> Sampler {
        match d {
            Distribution::Fixed => Sampler::Fixed,
            Distribution::Exp => Sampler::Exp,
            Distribution::Norm => {
                Sampler::Norm(Normal::new(1.0, NORM_SD).expect("constant parameters are valid"))
            }
            Distribution::Zipf => {
                let n = f64::from(ZIPF_N);
                let zipf = Zipf::new(n, ZIPF_S).expect("constant parameters are valid");
                Sampler::Zipf {
                    zipf,
                    inv_mean: 1.0 / zipf_mean(),
                }
            }
        }
    }

    fn sample(&self, rng: &mut SmallRng) -> f64 {
        match self {
            Sampler::Fixed => 1.0,
            Sampler::Exp => rng.sample(Exp1),
            Sampler::Norm(normal) => loop {
                let x = rng.sample(normal);
                if x >= 0.0 {
                    break x;
                }
            },
            Sampler::Zipf { zipf, inv_mean } => rng.sample(zipf) * inv_mean,
        }
    }
}

/// `E[k]` of the Zipf rank distribution.
fn zipf_mean() -> f64 {
    let (mut weights, mut moments) = (0.0, 0.0);
    for k in 1..=ZIPF_N {
        let w = f64::from(k).powf(-ZIPF_S);
        weights += w;
        moments += f64::from(k) * w;
    }
    moments / weights
}

/// The current segment of `Λ`, scaled by the process's share (so its mean gap is 1).
#[derive(Clone, Copy, Debug)]
struct Piece {
    start: f64,
    end: f64,
    /// `share * Λ(start)` and `share * Λ(end)` (infinite for a last segment with a rate).
    cum0: f64,
    cum1: f64,
    /// `share * r(start)`, `share * dr/dt`.
    rate0: f64,
    slope: f64,
    /// `1 / (r(start) * share)`: the exact period of a constant segment.
    inv_rate: f64,
}

impl Piece {
    fn new(seg: &Segment, share: f64) -> Piece {
        let rate0 = seg.rate0 * share;
        Piece {
            start: seg.start,
            end: seg.end,
            cum0: seg.cum0 * share,
            cum1: seg.cum1() * share,
            rate0,
            slope: seg.slope * share,
            inv_rate: 1.0 / rate0,
        }
    }

    /// Seconds since the start at which the scaled `Λ` reaches `x` (within this piece).
    fn inverse(&self, x: f64) -> f64 {
        let c = x - self.cum0;
        if c <= 0.0 {
            return self.start;
        }
        let tau = if self.slope == 0.0 {
            c * self.inv_rate
        } else {
            // Root of slope/2 τ² + rate0 τ - c = 0, in the form without cancellation.
            let disc = (self.rate0 * self.rate0 + 2.0 * self.slope * c).max(0.0);
            2.0 * c / (self.rate0 + disc.sqrt())
        };
        (self.start + tau).min(self.end)
    }
}

/// One arrival process: yields its intended send times, offsets from the run's start,
/// non-decreasing. O(1) and allocation-free per call (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct Schedule {
    profile: RateProfile,
    sampler: Sampler,
    rng: SmallRng,
    share: f64,
    phase: Duration,
    end: Option<Duration>,
    /// `S_k`: the unit gaps drawn so far.
    sum: f64,
    segment: usize,
    piece: Piece,
    last: Duration,
    done: bool,
}

impl Schedule {
    /// A process carrying `share` (in (0, 1]) of `profile`'s rate, its times shifted by
    /// `phase`, its gaps drawn from `distribution` with `seed` (one [`stream_seed`] per process).
    ///
    /// # Panics
    /// If `share` is not in (0, 1] (a programming error: the engine derives it).
    pub fn new(
        profile: &RateProfile,
        distribution: Distribution,
        share: f64,
        phase: Duration,
        seed: u64,
    ) -> Schedule {
        assert!(share > 0.0 && share <= 1.0, "share {share} not in (0, 1]");
        Schedule {
            profile: profile.clone(),
            sampler: Sampler::new(distribution),
            rng: SmallRng::seed_from_u64(seed),
            share,
            phase,
            end: None,
            sum: 0.0,
            segment: 0,
            piece: Piece::new(&profile.segments()[0], share),
            last: Duration::ZERO,
            done: false,
        }
    }

    /// Stops the process: [`Schedule::next`](Iterator::next) returns `None` for times at or past `end` (an
    /// offset from the run's start, like the times).
    pub fn until(mut self, end: Duration) -> Schedule {
        self.end = Some(end);
        self
    }
}

/// The intended send times, in order; after the first `None`, always `None`.
impl Iterator for Schedule {
    type Item = Duration;

    /// The next intended send time, as an offset from the run's start; `None` past the end
    /// (see [`Schedule::until`]) or when the profile's rate stays 0 for ever.
    fn next(&mut self) -> Option<Duration> {
        if self.done {
            return None;
        }
        let target = self.sum;
        while self.piece.cum1 <= target {
            self.segment += 1;
            let Some(seg) = self.profile.segments().get(self.segment) else {
                self.done = true;
                return None;
            };
            self.piece = Piece::new(seg, self.share);
        }
        let offset = Duration::try_from_secs_f64(self.piece.inverse(target)).ok();
        let Some(at) = offset.and_then(|o| self.phase.checked_add(o)) else {
            self.done = true;
            return None;
        };
        if self.end.is_some_and(|end| at >= end) {
            self.done = true;
            return None;
        }
        // Rounding at a segment boundary must not step back.
        let at = at.max(self.last);
        self.last = at;
        self.sum += self.sampler.sample(&mut self.rng);
        Some(at)
    }
}

impl std::iter::FusedIterator for Schedule {}

#[cfg(test)]
mod tests;
