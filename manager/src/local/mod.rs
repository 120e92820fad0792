//! The local backend: the app as processes on this machine (or the built-in demo service),
//! interference as `aefm-stress` processes pinned beside it, load from this process.

pub mod deployer;
pub mod interference;
pub mod process;

pub use deployer::LocalDeployer;
pub use interference::LocalInterference;
pub use process::{pin_current_thread, Child};
