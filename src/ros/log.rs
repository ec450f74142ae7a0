//! The bridge from `tracing` to the ROS log (and so to /rosout), under the node's logger name.

use std::sync::OnceLock;

/// Logger name of the node, once created (the tracing bridge writes to it).
pub(super) static ROS_LOGGER: OnceLock<String> = OnceLock::new();

/// A `tracing` layer that forwards warnings and errors to the ROS log (and so to /rosout) under
/// the node's logger name. Events before the node exists go to the terminal only.
pub struct RosLogLayer;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RosLogLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = *event.metadata().level();
        if level > tracing::Level::WARN {
            return;
        }
        let Some(logger) = ROS_LOGGER.get() else {
            return;
        };
        let mut text = String::new();
        event.record(&mut FieldText(&mut text));
        let severity = if level == tracing::Level::ERROR {
            r2r::LogSeverity::Error
        } else {
            r2r::LogSeverity::Warn
        };
        let meta = event.metadata();
        r2r::log(
            &text,
            logger,
            meta.file().unwrap_or("?"),
            meta.line().unwrap_or(0),
            severity,
        );
    }
}

struct FieldText<'a>(&'a mut String);

impl tracing::field::Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write;
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}
