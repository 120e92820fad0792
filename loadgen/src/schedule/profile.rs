//! [`RateProfile`]: the offered total rate `r(t)` as a function of time since the run's start,
//! piecewise constant or linear, its integral `Λ(t) = ∫₀ᵗ r(s) ds` in closed form, and the text
//! forms that describe it (`-R 2000`, `-R 1000:5000:60s`, `-R 1000@0s,5000@30s`, `--rate-file`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::units::{parse_metric, parse_time};

/// How the rate reaches a [`Point`]'s value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The rate jumps to the point's value at the point's time.
    Step,
    /// The rate goes linearly from the previous point's value to this point's value.
    Ramp,
}

/// One breakpoint of a profile: from `at` on, the rate is `rate` (until the next point).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Time since the run's start.
    pub at: Duration,
    /// Requests/s over all threads at `at`.
    pub rate: f64,
    /// How the rate gets there from the previous point.
    pub shape: Shape,
}

/// One piece of `r(t)`: `rate0 + slope * (t - start)` on `[start, end)`, with `cum0 = Λ(start)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Segment {
    pub(crate) start: f64,
    /// `f64::INFINITY` for the last segment, which holds its rate for ever.
    pub(crate) end: f64,
    pub(crate) rate0: f64,
    pub(crate) slope: f64,
    pub(crate) cum0: f64,
}

impl Segment {
    /// `Λ(start + tau) - Λ(start)` for `tau` within the segment.
    fn integral(&self, tau: f64) -> f64 {
        if tau <= 0.0 {
            return 0.0;
        }
        if self.slope == 0.0 {
            // Also keeps a zero-rate last segment at 0 instead of 0 * inf = NaN.
            return if self.rate0 == 0.0 {
                0.0
            } else {
                self.rate0 * tau
            };
        }
        self.rate0 * tau + 0.5 * self.slope * tau * tau
    }

    /// `Λ(end)`: infinite for a last segment with a positive rate.
    pub(crate) fn cum1(&self) -> f64 {
        self.cum0 + self.integral(self.end - self.start)
    }
}

/// The offered total rate as a function of time since the run's start: breakpoints joined by
/// steps or linear ramps, the last value held for ever. Cheap to clone (shared storage), always
/// valid (built only through checked constructors).
#[derive(Clone, Debug, PartialEq)]
pub struct RateProfile {
    points: Arc<[Point]>,
    segments: Arc<[Segment]>,
}

/// Why a rate profile was refused: one line naming the bad token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProfileError(pub String);

fn fail<T>(msg: String) -> Result<T, ProfileError> {
    Err(ProfileError(msg))
}

impl RateProfile {
    /// A constant rate (requests/s, > 0).
    pub fn constant(rate: f64) -> Result<RateProfile, ProfileError> {
        RateProfile::from_points(&[Point {
            at: Duration::ZERO,
            rate,
            shape: Shape::Step,
        }])
    }

    /// A linear ramp from `from` to `to` requests/s over `over` (> 0), then `to` held.
    pub fn ramp(from: f64, to: f64, over: Duration) -> Result<RateProfile, ProfileError> {
        RateProfile::from_points(&[
            Point {
                at: Duration::ZERO,
                rate: from,
                shape: Shape::Step,
            },
            Point {
                at: over,
                rate: to,
                shape: Shape::Ramp,
            },
        ])
    }

    /// A profile from its breakpoints: the first at 0 and not a ramp, times strictly
    /// increasing, rates finite and >= 0, and not 0 everywhere.
    pub fn from_points(points: &[Point]) -> Result<RateProfile, ProfileError> {
        let Some(first) = points.first() else {
            return fail("rate profile has no points".into());
        };
        if !first.at.is_zero() {
            return fail(format!(
                "the first rate point must be at 0s (got {:?})",
                first.at
            ));
        }
        if first.shape == Shape::Ramp {
            return fail("the first rate point cannot be a ramp (nothing to ramp from)".into());
        }
        for (i, p) in points.iter().enumerate() {
            if !(p.rate.is_finite() && p.rate >= 0.0) {
                return fail(format!("rate {} at {:?} must be >= 0", p.rate, p.at));
            }
            if i > 0 && p.at <= points[i - 1].at {
                return fail(format!(
                    "rate point times must increase: {:?} comes after {:?}",
                    p.at,
                    points[i - 1].at
                ));
            }
        }
        if points.iter().all(|p| p.rate == 0.0) {
            return fail("the rate is 0 everywhere: nothing would be sent".into());
        }
        Ok(RateProfile {
            segments: segments(points).into(),
            points: points.into(),
        })
    }

    /// Reads the `-R` forms: `2000` or `10k` (constant), `1000:5000:60s` (linear ramp from
    /// 1000 to 5000 req/s over 60 s, then 5000 held), or a comma-separated list of points
    /// `RATE@TIME` (step to RATE at TIME) and `RATE~TIME` (ramp to reach RATE at TIME), e.g.
    /// `1000@0s,5000@30s` or `1000,5000~60s,5000@90s,0@120s`; the first point may omit `@0`.
    /// Rates take `k`/`M` suffixes, times the usual units (a bare number is seconds).
    pub fn parse(text: &str) -> Result<RateProfile, ProfileError> {
        let text = text.trim();
        if text.contains(',') || text.contains('@') || text.contains('~') {
            return parse_list(text);
        }
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [rate] => RateProfile::constant(parse_rate(rate)?),
            [from, to, over] => {
                let over = parse_at(over)?;
                if over.is_zero() {
                    return fail(format!("ramp time '{}' must be > 0", parts[2]));
                }
                RateProfile::ramp(parse_rate(from)?, parse_rate(to)?, over)
            }
            _ => fail(format!(
                "invalid rate '{text}' (expected e.g. 2000, 1000:5000:60s or 1000@0s,5000@30s)"
            )),
        }
    }

    /// Reads a rate file: one point a line, `TIME RATE [step|ramp]` (default `step`), blank
    /// lines and `#` comments ignored. Errors name the line.
    pub fn parse_file(text: &str) -> Result<RateProfile, ProfileError> {
        let mut points = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at_line = |e: ProfileError| ProfileError(format!("line {}: {}", i + 1, e.0));
            points.push(parse_file_line(line).map_err(at_line)?);
        }
        if points.is_empty() {
            return fail("rate file has no points".into());
        }
        RateProfile::from_points(&points)
    }

    /// [`RateProfile::parse_file`] on a file's contents; errors name the file.
    pub fn read_file(path: &Path) -> Result<RateProfile, ProfileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ProfileError(format!("{}: {e}", path.display())))?;
        RateProfile::parse_file(&text)
            .map_err(|e| ProfileError(format!("{}: {}", path.display(), e.0)))
    }

    /// The breakpoints, as given.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The rate if it never changes.
    pub fn as_constant(&self) -> Option<f64> {
        (self.points.len() == 1).then(|| self.points[0].rate)
    }

    /// `r(t)`, requests/s at `t` seconds since the start.
    pub fn rate_at(&self, t: f64) -> f64 {
        let s = self.segment_at(t);
        s.rate0 + s.slope * (t - s.start).max(0.0)
    }

    /// `Λ(t)`: requests offered from the start to `t` seconds (0 for `t <= 0`).
    pub fn cumulative(&self, t: f64) -> f64 {
        if t <= 0.0 {
            return 0.0;
        }
        let s = self.segment_at(t);
        s.cum0 + s.integral(t - s.start)
    }

    /// Requests offered in second `second` of the run: `Λ(i+1) - Λ(i)`.
    pub fn offered_in(&self, second: u64) -> f64 {
        self.offered_between(second as f64, second as f64 + 1.0)
    }

    /// Requests offered between `from` and `to` seconds since the start.
    pub fn offered_between(&self, from: f64, to: f64) -> f64 {
        (self.cumulative(to) - self.cumulative(from)).max(0.0)
    }

    /// Mean rate over the first `duration` of the run, requests/s.
    pub fn mean_rate(&self, duration: Duration) -> f64 {
        let d = duration.as_secs_f64();
        if d > 0.0 {
            self.cumulative(d) / d
        } else {
            self.rate_at(0.0)
        }
    }

    /// Every rate multiplied by `factor` (> 0): the share one of several processes offers.
    pub fn scaled(&self, factor: f64) -> Result<RateProfile, ProfileError> {
        if !(factor.is_finite() && factor > 0.0) {
            return fail(format!("scale factor {factor} must be > 0"));
        }
        let points: Vec<Point> = self
            .points
            .iter()
            .map(|p| Point {
                rate: p.rate * factor,
                ..*p
            })
            .collect();
        RateProfile::from_points(&points)
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The segment holding `t` (the first one for `t < 0`).
    fn segment_at(&self, t: f64) -> &Segment {
        let i = self.segments.partition_point(|s| s.start <= t);
        &self.segments[i.saturating_sub(1)]
    }
}

/// The `-R` list form: `1000@0s,5000@30s,2000~60s`; parses back to the same profile.
impl fmt::Display for RateProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(rate) = self.as_constant() {
            return write!(f, "{rate}");
        }
        for (i, p) in self.points.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let mark = match p.shape {
                Shape::Step => '@',
                Shape::Ramp => '~',
            };
            write!(f, "{sep}{}{mark}{}s", p.rate, p.at.as_secs_f64())?;
        }
        Ok(())
    }
}

/// The segments between consecutive points, with `Λ` at each start.
fn segments(points: &[Point]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::with_capacity(points.len());
    let mut cum0 = 0.0;
    for (i, p) in points.iter().enumerate() {
        let start = p.at.as_secs_f64();
        let (end, slope) = match points.get(i + 1) {
            Some(next) => {
                let end = next.at.as_secs_f64();
                let slope = match next.shape {
                    Shape::Ramp => (next.rate - p.rate) / (end - start),
                    Shape::Step => 0.0,
                };
                (end, slope)
            }
            None => (f64::INFINITY, 0.0),
        };
        let seg = Segment {
            start,
            end,
            rate0: p.rate,
            slope,
            cum0,
        };
        cum0 = seg.cum1();
        out.push(seg);
    }
    out
}

/// A rate token: a metric number, never negative.
fn parse_rate(token: &str) -> Result<f64, ProfileError> {
    let token = token.trim();
    if token.starts_with('-') {
        return fail(format!("invalid rate '{token}': must not be negative"));
    }
    parse_metric(token).map_err(|_| {
        ProfileError(format!(
            "invalid rate '{token}' (expected requests/s, e.g. 100, 2k, 1.5M)"
        ))
    })
}

/// A time token: a duration since the start, never negative.
fn parse_at(token: &str) -> Result<Duration, ProfileError> {
    let token = token.trim();
    if token.starts_with('-') {
        return fail(format!("invalid time '{token}': must not be negative"));
    }
    parse_time(token).map_err(|_| {
        ProfileError(format!(
            "invalid time '{token}' (expected e.g. 30, 30s, 500ms, 2m)"
        ))
    })
}

/// `RATE@TIME,RATE~TIME,...` (the first may be a bare `RATE`, meaning `RATE@0`).
fn parse_list(text: &str) -> Result<RateProfile, ProfileError> {
    let mut points = Vec::new();
    for (i, item) in text.split(',').enumerate() {
        let item = item.trim();
        let point = match item.find(['@', '~']) {
            Some(k) => Point {
                rate: parse_rate(&item[..k])?,
                at: parse_at(&item[k + 1..])?,
                shape: if item[k..].starts_with('~') {
                    Shape::Ramp
                } else {
                    Shape::Step
                },
            },
            None if i == 0 => Point {
                rate: parse_rate(item)?,
                at: Duration::ZERO,
                shape: Shape::Step,
            },
            None => {
                return fail(format!(
                    "rate point '{item}' needs a time: RATE@TIME (step) or RATE~TIME (ramp)"
                ))
            }
        };
        if let Some(prev) = points.last().map(|p: &Point| p.at) {
            if point.at <= prev {
                return fail(format!(
                    "rate point '{item}': times must increase (previous point at {prev:?})"
                ));
            }
        }
        if i == 0 && !point.at.is_zero() {
            return fail(format!(
                "rate point '{item}': the first point must be at 0s"
            ));
        }
        if i == 0 && point.shape == Shape::Ramp {
            return fail(format!(
                "rate point '{item}': the first point cannot be a ramp (nothing to ramp from)"
            ));
        }
        points.push(point);
    }
    RateProfile::from_points(&points)
}

/// One rate-file line: `TIME RATE [step|ramp]`.
fn parse_file_line(line: &str) -> Result<Point, ProfileError> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (time, rate, shape) = match fields.as_slice() {
        [t, r] => (t, r, Shape::Step),
        [t, r, "step"] => (t, r, Shape::Step),
        [t, r, "ramp"] => (t, r, Shape::Ramp),
        [_, _, other] => return fail(format!("invalid shape '{other}' (expected step or ramp)")),
        _ => {
            return fail(format!(
                "invalid line '{line}' (expected TIME RATE [step|ramp])"
            ))
        }
    };
    Ok(Point {
        at: parse_at(time)?,
        rate: parse_rate(rate)?,
        shape,
    })
}

#[cfg(test)]
#[path = "profile_tests.rs"]
mod tests;
