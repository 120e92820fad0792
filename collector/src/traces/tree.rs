//! One trace's span tree, rebuilt from `references` by the rules in the module doc of
//! `traces.rs`: each span's parent, kind and process ([`Scratch::link`]), the union of its
//! `CHILD_OF` children's intervals ([`Scratch::union_children`]), and its self time, which with
//! its total time goes into the statistics ([`Scratch::self_times`]). Everything lives in
//! reusable scratch space, so a trace costs no allocation once the first ones warmed it up.

use super::hash::{SpanIndex, NONE};
use super::jaeger::{ProcRec, SpanRec, TraceView};
use super::json::{same, Str};
use super::rows::Num;
use super::stats::Groups;
use super::{RefKind, TraceCounts};

/// Per-span facts of the current trace.
#[derive(Clone, Copy)]
pub(crate) struct SpanFacts {
    /// Index of the parent span in the trace, or [`NONE`].
    pub(crate) parent: u32,
    /// How the span hangs in the trace.
    pub(crate) kind: RefKind,
    /// Index of the span's process in the trace, or [`NONE`].
    pub(crate) process: u32,
    /// Children of either kind.
    pub(crate) children: u32,
    /// Length of the union of the `CHILD_OF` children's intervals, clipped to the span.
    union: u64,
    /// Self time, µs.
    pub(crate) self_us: u64,
    /// End time, formatted once for the rows that repeat it.
    pub(crate) end: Num,
    /// Self time, formatted once for the rows that repeat it.
    pub(crate) self_text: Num,
}

impl SpanFacts {
    /// The span's service (empty without a process).
    #[inline(always)]
    pub(crate) fn service(&self, procs: &[ProcRec]) -> Str {
        match self.process {
            NONE => Str::default(),
            pi => procs[pi as usize].service,
        }
    }

    /// The span's pod (empty without a process).
    #[inline(always)]
    pub(crate) fn pod(&self, procs: &[ProcRec]) -> Str {
        match self.process {
            NONE => Str::default(),
            pi => procs[pi as usize].pod,
        }
    }
}

/// Reusable per-trace scratch space (no allocation per trace once warmed up).
#[derive(Default)]
pub(crate) struct Scratch {
    index: SpanIndex,
    /// Per span of the trace, in input order.
    pub(crate) facts: Vec<SpanFacts>,
    intervals: Vec<(u32, u64, u64)>,
    /// Per process of the trace: the id of its service in `ops` and its (service, pod) group,
    /// [`NONE`] until a span uses the process.
    proc_groups: Vec<(u32, u32)>,
}

/// The roots and orphans of one trace.
pub(crate) struct Shape {
    /// Spans without references.
    pub(crate) roots: u32,
    /// Spans whose references all point outside the trace.
    pub(crate) orphans: u32,
    /// Index of the first root, or [`NONE`].
    pub(crate) first_root: u32,
}

/// Sums over the spans of one trace.
pub(crate) struct Extent {
    /// Spans with the `error` tag set.
    pub(crate) errors: u64,
    /// Earliest start, µs (0 for a trace without spans).
    pub(crate) min_start: u64,
    /// Latest end, µs.
    pub(crate) max_end: u64,
}

impl Scratch {
    /// Finds each span's parent, kind and process (the first facts of each span), and counts
    /// roots, orphans and `FOLLOWS_FROM` edges.
    pub(crate) fn link(&mut self, v: &TraceView<'_>, c: &mut TraceCounts) -> Shape {
        let (spans, procs) = (&v.t.spans, &v.t.procs);
        self.index.build(v);
        // Groups of each process, looked up when a span first uses it (once per process, not per
        // span; a process no span uses must not get a row).
        self.proc_groups.clear();
        self.proc_groups.resize(procs.len(), (NONE, NONE));
        self.facts.clear();
        let mut shape = Shape {
            roots: 0,
            orphans: 0,
            first_root: NONE,
        };
        for (i, sp) in spans.iter().enumerate() {
            let (parent, kind) = self.parent_of(v, i, sp);
            match kind {
                RefKind::Root => {
                    shape.roots += 1;
                    if shape.first_root == NONE {
                        shape.first_root = i as u32;
                    }
                }
                RefKind::Orphan => shape.orphans += 1,
                RefKind::FollowsFrom => c.follows_from_edges += 1,
                RefKind::ChildOf => {}
            }
            self.facts.push(SpanFacts {
                parent,
                kind,
                process: process_of(v, procs, sp),
                children: 0,
                union: 0,
                self_us: 0,
                end: Num::default(),
                self_text: Num::default(),
            });
        }
        c.orphan_spans += shape.orphans as u64;
        c.traces_with_orphans += (shape.orphans > 0) as u64;
        c.multi_root_traces += (shape.roots > 1) as u64;
        c.no_root_traces += (shape.roots == 0) as u64;
        shape
    }

    /// The parent of span `i` and how it hangs: its `CHILD_OF` reference when that span is in
    /// the trace (and not the span itself), else its `FOLLOWS_FROM` one likewise, else an orphan;
    /// a span without references is a root.
    #[inline]
    fn parent_of(&self, v: &TraceView<'_>, i: usize, sp: &SpanRec) -> (u32, RefKind) {
        if !sp.child_of.is_present() && !sp.follows_from.is_present() {
            return (NONE, RefKind::Root);
        }
        let co = if sp.child_of.is_present() {
            self.index.find(v, v.get(sp.child_of))
        } else {
            NONE
        };
        if co != NONE && co as usize != i {
            return (co, RefKind::ChildOf);
        }
        let ff = if sp.follows_from.is_present() {
            self.index.find(v, v.get(sp.follows_from))
        } else {
            NONE
        };
        if ff != NONE && ff as usize != i {
            (ff, RefKind::FollowsFrom)
        } else {
            (NONE, RefKind::Orphan)
        }
    }

    /// Counts each span's children and sets the union of its `CHILD_OF` children's intervals,
    /// each clipped to the parent (children outside it are counted).
    pub(crate) fn union_children(&mut self, spans: &[SpanRec], c: &mut TraceCounts) {
        self.intervals.clear();
        for i in 0..spans.len() {
            let p = self.facts[i].parent;
            if p == NONE {
                continue;
            }
            self.facts[p as usize].children += 1;
            if self.facts[i].kind != RefKind::ChildOf {
                continue;
            }
            let par = &spans[p as usize];
            let (ps, pe) = (par.start, par.start + par.duration);
            let (cs, ce) = (spans[i].start, spans[i].start + spans[i].duration);
            if cs < ps || ce > pe {
                c.children_outside_parent += 1;
            }
            let (cs, ce) = (cs.max(ps), ce.min(pe));
            if ce > cs {
                self.intervals.push((p, cs, ce));
            }
        }
        self.merge_intervals();
    }

    /// Sorts the clipped child intervals by parent and start, and sets each parent's `union` to
    /// the length of the union of its children's intervals.
    fn merge_intervals(&mut self) {
        self.intervals.sort_unstable();
        let mut k = 0;
        while k < self.intervals.len() {
            let (p, mut cur_s, mut cur_e) = self.intervals[k];
            let mut total = 0;
            k += 1;
            while k < self.intervals.len() && self.intervals[k].0 == p {
                let (_, a, b) = self.intervals[k];
                if a > cur_e {
                    total += cur_e - cur_s;
                    cur_s = a;
                    cur_e = b;
                } else if b > cur_e {
                    cur_e = b;
                }
                k += 1;
            }
            total += cur_e - cur_s;
            self.facts[p as usize].union = total;
        }
    }

    /// Sets each span's self time and the numbers written more than once (end and self time),
    /// adds each span to the statistics per (service, operation) in `ops` and per (service, pod)
    /// in `pods`, and sums the trace's errors and time range.
    pub(crate) fn self_times(
        &mut self,
        v: &TraceView<'_>,
        ops: &mut Groups,
        pods: &mut Groups,
    ) -> Extent {
        let (spans, procs) = (&v.t.spans, &v.t.procs);
        let mut x = Extent {
            errors: 0,
            min_start: u64::MAX,
            max_end: 0,
        };
        let mut no_proc = (NONE, NONE);
        for (sp, f) in spans.iter().zip(self.facts.iter_mut()) {
            let end = sp.start + sp.duration;
            x.min_start = x.min_start.min(sp.start);
            x.max_end = x.max_end.max(end);
            f.self_us = sp.duration - f.union.min(sp.duration);
            f.end = Num::new(end);
            f.self_text = Num::new(f.self_us);
            x.errors += sp.error as u64;
            let (svc, pod) = match f.process {
                NONE => (&b""[..], &b""[..]),
                pi => (
                    v.get(procs[pi as usize].service),
                    v.get(procs[pi as usize].pod),
                ),
            };
            let groups = match f.process {
                NONE => &mut no_proc,
                pi => &mut self.proc_groups[pi as usize],
            };
            if groups.0 == NONE {
                groups.0 = ops.first(svc);
                let first = pods.first(svc);
                groups.1 = pods.get(first, svc, pod);
            }
            let (ops_first, pod_group) = *groups;
            let op = ops.get(ops_first, svc, v.get(sp.op));
            ops.add(op, f.self_us, sp.duration, sp.error);
            pods.add(pod_group, f.self_us, sp.duration, sp.error);
        }
        if spans.is_empty() {
            x.min_start = 0;
        }
        x
    }
}

/// The index of the process of span `sp` in `procs`, or [`NONE`] (linear: a trace has a handful
/// of processes; the first match wins).
#[inline]
fn process_of(v: &TraceView<'_>, procs: &[ProcRec], sp: &SpanRec) -> u32 {
    let pid = v.get(sp.process);
    procs
        .iter()
        .position(|p| same(v.get(p.key), pid))
        .map_or(NONE, |x| x as u32)
}
