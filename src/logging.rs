//! Logging: `tracing` events go to the systemd journal (with priorities and
//! the event's fields) when systemd connected our stderr to it, and to
//! stderr otherwise (terminals, tests, containers, no journald socket).

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the global subscriber. `filter` is a tracing filter string such as
/// `deltaglider_proxy=info`.
pub fn init(filter: &str) {
    let env_filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: invalid log filter {filter:?} ({e}); using deltaglider_proxy=info");
        EnvFilter::new("deltaglider_proxy=info")
    });
    if systemd_journal_logger::connected_to_journal() {
        match systemd_journal_logger::JournalLog::new() {
            Ok(journal) => {
                let journal = journal.with_syslog_identifier("deltaglider_proxy".into());
                if let Ok(a) = systemd_journal_logger::JournalLog::new() {
                    crate::audit::to_journal(a.with_syslog_identifier("deltaglider_proxy".into()));
                }
                let _ = tracing_subscriber::registry()
                    .with(env_filter)
                    .with(JournalLayer { journal })
                    .try_init();
                return;
            }
            Err(e) => eprintln!("warning: cannot connect to the journal ({e}); logging to stderr"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Sends each event as one journal entry: MESSAGE is the message followed by
/// its fields (`key=value`), PRIORITY follows the level.
struct JournalLayer {
    journal: systemd_journal_logger::JournalLog,
}

#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// A span's fields as text, kept in its extensions for the events inside it.
struct SpanFields(String);

/// Records fields as ` span.name=value`.
struct Prefixed {
    prefix: &'static str,
    out: String,
}

impl Visit for Prefixed {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.out, " {}.{}={value:?}", self.prefix, field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.out, " {}.{}={value}", self.prefix, field.name());
    }
}

impl<S> Layer<S> for JournalLayer
where
    S: Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut f = Prefixed {
                prefix: span.name(),
                out: String::new(),
            };
            attrs.record(&mut f);
            span.extensions_mut().insert(SpanFields(f.out));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        // The fields of the spans around the event (`request.id=…`), so an
        // error in the journal can be found from the id the client got.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(f) = span.extensions().get::<SpanFields>() {
                    text.fields.push_str(&f.0);
                }
            }
        }
        let level = match *meta.level() {
            Level::ERROR => log::Level::Error,
            Level::WARN => log::Level::Warn,
            Level::INFO => log::Level::Info,
            Level::DEBUG => log::Level::Debug,
            Level::TRACE => log::Level::Trace,
        };
        let _ = self.journal.journal_send(
            &log::Record::builder()
                .level(level)
                .target(meta.target())
                .module_path(meta.module_path())
                .file(meta.file())
                .line(meta.line())
                .args(format_args!("{}{}", text.message, text.fields))
                .build(),
        );
    }
}
