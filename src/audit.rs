//! The audit log: one structured record per request (S3 and `/_/`), written
//! when the response is ready: to the journal as fields (`REQUEST_ID`,
//! `SOURCE_IP`, `USER`, ...) when systemd connected us to it, else as one
//! JSON line on standard output (`"type":"audit"`). It names who did what
//! to which object and how it ended; it never holds a secret, a signature
//! or key material (the request's headers are not in it).

use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Record {
    /// RFC 3339, UTC.
    pub time: String,
    pub request_id: String,
    pub source_ip: String,
    /// `admin`, an IAM user's name, or `anonymous`.
    pub user: String,
    pub access_key_id: Option<String>,
    /// The S3 operation (`PutObject`) or `Admin` for `/_/` requests.
    pub operation: String,
    pub method: String,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub status: u16,
    /// The request's declared Content-Length.
    pub bytes_in: u64,
    /// The response's Content-Length (what a complete transfer sends).
    pub bytes_out: u64,
    /// Time to the response head.
    pub duration_ms: u64,
    /// `allow`, `deny`, or `none` (refused before authorization).
    pub decision: &'static str,
    /// The rule that decided (`user ci permission 0`, `admission block x`).
    pub rule: Option<String>,
}

enum Sink {
    Journal(systemd_journal_logger::JournalLog),
    Stdout,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends audit records to the journal (called by `logging::init` when
/// connected to it); without this call they go to standard output.
pub fn to_journal(j: systemd_journal_logger::JournalLog) {
    let _ = SINK.set(Sink::Journal(j));
}

/// The records kept in memory for the admin UI's audit viewer (the journal
/// or standard output keeps them all).
pub const RECENT: usize = 5000;

fn recent_log() -> &'static Mutex<VecDeque<Record>> {
    static LOG: OnceLock<Mutex<VecDeque<Record>>> = OnceLock::new();
    LOG.get_or_init(|| Mutex::new(VecDeque::with_capacity(RECENT)))
}

/// The newest records first, those `keep` accepts, at most `limit`.
pub fn recent(limit: usize, keep: &dyn Fn(&Record) -> bool) -> Vec<Record> {
    let log = recent_log().lock().unwrap_or_else(|p| p.into_inner());
    log.iter()
        .rev()
        .filter(|r| keep(r))
        .take(limit)
        .cloned()
        .collect()
}

/// Writes one record.
pub fn emit(r: &Record) {
    {
        let mut log = recent_log().lock().unwrap_or_else(|p| p.into_inner());
        if log.len() == RECENT {
            log.pop_front();
        }
        log.push_back(r.clone());
    }
    match SINK.get_or_init(|| Sink::Stdout) {
        Sink::Stdout => {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert("type".into(), "audit".into());
            }
            // One write per line: lines from concurrent requests never interleave.
            let line = format!("{v}\n");
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
        }
        Sink::Journal(j) => {
            use log::kv::Value;
            let none = String::new();
            let kvs: [(&str, Value<'_>); 15] = [
                ("AUDIT", Value::from("1")),
                ("REQUEST_ID", Value::from(r.request_id.as_str())),
                ("SOURCE_IP", Value::from(r.source_ip.as_str())),
                ("USER", Value::from(r.user.as_str())),
                (
                    "ACCESS_KEY_ID",
                    Value::from(r.access_key_id.as_ref().unwrap_or(&none).as_str()),
                ),
                ("OPERATION", Value::from(r.operation.as_str())),
                ("METHOD", Value::from(r.method.as_str())),
                (
                    "BUCKET",
                    Value::from(r.bucket.as_ref().unwrap_or(&none).as_str()),
                ),
                ("KEY", Value::from(r.key.as_ref().unwrap_or(&none).as_str())),
                ("STATUS", Value::from(r.status)),
                ("BYTES_IN", Value::from(r.bytes_in)),
                ("BYTES_OUT", Value::from(r.bytes_out)),
                ("DURATION_MS", Value::from(r.duration_ms)),
                ("DECISION", Value::from(r.decision)),
                (
                    "RULE",
                    Value::from(r.rule.as_ref().unwrap_or(&none).as_str()),
                ),
            ];
            let _ = j.journal_send(
                &log::Record::builder()
                    .level(log::Level::Info)
                    .target("deltaglider_proxy::audit")
                    .key_values(&kvs)
                    .args(format_args!(
                        "audit {} {} {}/{} -> {} ({})",
                        r.user,
                        r.operation,
                        r.bucket.as_deref().unwrap_or(""),
                        r.key.as_deref().unwrap_or(""),
                        r.status,
                        r.decision
                    ))
                    .build(),
            );
        }
    }
}

/// Now, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
