//! The load-generator benchmark harness behind `bench/loadgen.sh`: a stall server that freezes on
//! cue ([`stall`]), the open-loop coordinated-omission model and its check ([`model`]), a parser
//! of wrk / wrk2 / aefm-load text reports ([`wrkparse`]), and the `loadbench` subcommands that
//! run generators against them ([`co`], [`sweep`], with the process plumbing in [`run`]).

pub mod co;
pub mod framing;
pub mod measure;
pub mod model;
pub mod run;
pub mod stall;
pub mod sweep;
pub mod wrkparse;
