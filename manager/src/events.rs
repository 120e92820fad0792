//! The experiment's typed events and the ordered handler lists attached to them.
//!
//! Each event has a list of handlers run in order. The default workflow registers one handler per
//! built-in event; users `replace`, `append` or `insert` their own, and fire custom events with
//! [`Context::fire`]. Shell `hooks:` from the config are appended as handlers too.

use std::collections::BTreeMap;
use std::fmt;

use crate::components::Components;
use crate::context::Context;

/// An event of the experiment lifecycle.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// Once, first: checks external services, prepares the results directory.
    StartExperiment,
    /// Once: brings the app up, waits until it is ready, and seeds its data (`seed:`).
    InitEnvironment,
    /// Before a case whose value of this dimension differs from the previous case (`start_<dim>`).
    StartDimension(String),
    /// Runs the case's load (warm-up, then the measured window).
    StartSingleTestCase,
    /// Collects the case's data (after the grace period).
    StartDataCollection,
    /// After a case, successful or not.
    EndSingleTestCase,
    /// A handler of a case failed (the case is recorded as failed).
    Error,
    /// Stops everything AEFM started (interference, app). Also runs on Ctrl-C and fatal errors.
    Cleanup,
    /// Once, last.
    EndExperiment,
    /// A user event, fired with [`Context::fire`].
    Custom(String),
}

impl Event {
    /// The event's name as used in `hooks:` (`start_rate`, `custom:my_event`).
    pub fn name(&self) -> String {
        match self {
            Event::StartExperiment => "start_experiment".into(),
            Event::InitEnvironment => "init_environment".into(),
            Event::StartDimension(d) => format!("start_{d}"),
            Event::StartSingleTestCase => "start_single_test_case".into(),
            Event::StartDataCollection => "start_data_collection".into(),
            Event::EndSingleTestCase => "end_single_test_case".into(),
            Event::Error => "error".into(),
            Event::Cleanup => "cleanup".into(),
            Event::EndExperiment => "end_experiment".into(),
            Event::Custom(n) => format!("custom:{n}"),
        }
    }

    /// The event for a hook name; `start_<dim>` for any other `start_` name.
    pub fn from_name(name: &str) -> Event {
        match name {
            "start_experiment" => Event::StartExperiment,
            "init_environment" => Event::InitEnvironment,
            "start_single_test_case" => Event::StartSingleTestCase,
            "start_data_collection" => Event::StartDataCollection,
            "end_single_test_case" => Event::EndSingleTestCase,
            "error" => Event::Error,
            "cleanup" => Event::Cleanup,
            "end_experiment" => Event::EndExperiment,
            n => match (n.strip_prefix("custom:"), n.strip_prefix("start_")) {
                (Some(c), _) => Event::Custom(c.to_string()),
                (None, Some(d)) => Event::StartDimension(d.to_string()),
                _ => Event::Custom(n.to_string()),
            },
        }
    }
}

impl Event {
    /// The built-in events that exist whatever the sweep, in lifecycle order (`start_<dim>`
    /// events come from the sweep's dimensions and custom events from handlers).
    pub const BUILT_IN: &'static [Event] = &[
        Event::StartExperiment,
        Event::InitEnvironment,
        Event::StartSingleTestCase,
        Event::StartDataCollection,
        Event::EndSingleTestCase,
        Event::Error,
        Event::Cleanup,
        Event::EndExperiment,
    ];
}

/// The names hooks may use for a sweep with these dimensions: the built-in events, then
/// `start_<dim>` per dimension.
pub fn event_names<'a>(dimensions: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    Event::BUILT_IN
        .iter()
        .map(Event::name)
        .chain(
            dimensions
                .into_iter()
                .map(|d| Event::StartDimension(d.to_string()).name()),
        )
        .collect()
}

/// The names of the built-in events for this config (hooks may name these).
pub fn known_events(cfg: &crate::config::Config) -> Vec<String> {
    event_names(cfg.dimensions().iter().map(|d| d.name.as_str()))
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// What a handler returns on failure: any error (`?` works with std errors and `anyhow`).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Something run at an event.
pub trait Handler: Send {
    /// Does the work. An error fails the current case (or the experiment outside a case).
    fn handle(
        &mut self,
        ctx: &mut Context,
        components: &mut Components,
    ) -> Result<(), HandlerError>;
}

impl<F> Handler for F
where
    F: FnMut(&mut Context, &mut Components) -> Result<(), HandlerError> + Send,
{
    fn handle(
        &mut self,
        ctx: &mut Context,
        components: &mut Components,
    ) -> Result<(), HandlerError> {
        self(ctx, components)
    }
}

/// A handler with the name it is listed under (for logs and `aefm plan`).
pub struct Named {
    /// Name, e.g. `default:run_load` or `hook[0]`.
    pub name: String,
    /// The handler.
    pub handler: Box<dyn Handler>,
}

/// Ordered handler lists per event.
#[derive(Default)]
pub struct Handlers {
    lists: BTreeMap<Event, Vec<Named>>,
}

impl Handlers {
    /// No handlers at all.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Replaces all handlers of `event` with this one.
    pub fn replace(&mut self, event: Event, name: impl Into<String>, h: impl Handler + 'static) {
        self.lists.insert(
            event,
            vec![Named {
                name: name.into(),
                handler: Box::new(h),
            }],
        );
    }

    /// Adds a handler after the existing ones.
    pub fn append(&mut self, event: Event, name: impl Into<String>, h: impl Handler + 'static) {
        self.lists.entry(event).or_default().push(Named {
            name: name.into(),
            handler: Box::new(h),
        });
    }

    /// Adds a handler before the existing ones.
    pub fn insert(&mut self, event: Event, name: impl Into<String>, h: impl Handler + 'static) {
        self.lists.entry(event).or_default().insert(
            0,
            Named {
                name: name.into(),
                handler: Box::new(h),
            },
        );
    }

    /// Removes every handler of `event`.
    pub fn clear(&mut self, event: &Event) {
        self.lists.remove(event);
    }

    /// Names of the handlers of `event`, in run order.
    pub fn names(&self, event: &Event) -> Vec<String> {
        self.lists
            .get(event)
            .map(|l| l.iter().map(|n| n.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Runs the handlers of `event` in order, then any custom events they fired (depth-limited).
    /// Stops at the first failure and returns it with the handler's name.
    pub fn trigger(
        &mut self,
        event: &Event,
        ctx: &mut Context,
        components: &mut Components,
    ) -> Result<(), HandlerFailure> {
        self.trigger_depth(event, ctx, components, 0)
    }

    fn trigger_depth(
        &mut self,
        event: &Event,
        ctx: &mut Context,
        components: &mut Components,
        depth: usize,
    ) -> Result<(), HandlerFailure> {
        if depth > 16 {
            return Err(HandlerFailure {
                event: event.name(),
                handler: "-".into(),
                message: "custom events nested more than 16 deep (an event firing itself?)".into(),
            });
        }
        let Some(mut list) = self.lists.remove(event) else {
            tracing::debug!(event = %event, "no handler");
            return Ok(());
        };
        let mut result = Ok(());
        for named in list.iter_mut() {
            tracing::debug!(event = %event, handler = %named.name, "handler start");
            let r = named.handler.handle(ctx, components);
            let fired = ctx.take_fired();
            if let Err(e) = r {
                result = Err(HandlerFailure {
                    event: event.name(),
                    handler: named.name.clone(),
                    message: error_chain(e.as_ref()),
                });
                break;
            }
            for f in fired {
                // Put the list back while nested events run, so an event can be fired from its
                // own handlers' descendants without losing handlers.
                let custom = Event::Custom(f);
                if let Err(e) = self.trigger_depth(&custom, ctx, components, depth + 1) {
                    result = Err(e);
                    break;
                }
            }
            if result.is_err() {
                break;
            }
        }
        // Keep handlers registered while this event ran (e.g. by a handler) after the old ones.
        if let Some(added) = self.lists.remove(event) {
            list.extend(added);
        }
        self.lists.insert(event.clone(), list);
        result
    }
}

/// A failed handler: which event, which handler, what went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{event}: handler {handler} failed: {message}")]
pub struct HandlerFailure {
    /// Event name.
    pub event: String,
    /// Handler name.
    pub handler: String,
    /// The error and its causes, joined with `: `.
    pub message: String,
}

/// An error and its sources on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in [
            Event::StartExperiment,
            Event::StartDimension("rate".into()),
            Event::Custom("x".into()),
            Event::Cleanup,
        ] {
            assert_eq!(Event::from_name(&e.name()), e);
        }
    }

    #[test]
    fn event_names_are_the_built_ins_then_one_per_dimension() {
        let names = event_names(["round", "rate"]);
        assert_eq!(names.len(), Event::BUILT_IN.len() + 2);
        assert_eq!(names[0], "start_experiment");
        assert_eq!(names[names.len() - 2..], ["start_round", "start_rate"]);
        for n in &names {
            assert!(!matches!(Event::from_name(n), Event::Custom(_)), "{n}");
        }
    }

    #[test]
    fn replace_append_insert_order() {
        let mut h = Handlers::empty();
        let noop = |_: &mut Context, _: &mut Components| -> Result<(), HandlerError> { Ok(()) };
        h.append(Event::Error, "a", noop);
        h.append(Event::Error, "b", noop);
        h.insert(Event::Error, "first", noop);
        assert_eq!(h.names(&Event::Error), vec!["first", "a", "b"]);
        h.replace(Event::Error, "only", noop);
        assert_eq!(h.names(&Event::Error), vec!["only"]);
    }
}
