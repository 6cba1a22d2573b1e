//! Logging setup: tracing to stderr, in a journald-friendly shape (no
//! colours, no timestamps of our own) when systemd started us.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is a tracing filter string such as
/// `deltaglider_proxy=info`.
pub fn init(filter: &str) {
    let env_filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: invalid log filter {filter:?} ({e}); using deltaglider_proxy=info");
        EnvFilter::new("deltaglider_proxy=info")
    });
    let under_systemd = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let res = if under_systemd {
        builder.with_ansi(false).without_time().try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    let _ = res;
}
