//! Test-only crash points: `DGP_FAILPOINT=name[=action],...` makes the
//! process stop (or pause) at a named point, so the crash-safety tests can
//! kill the server exactly between two durable steps instead of hoping a
//! `kill -9` lands there. Without the variable every point is inert: one
//! relaxed load of an already-initialised `OnceLock` per call.
//!
//! Actions: `abort` (the default; SIGABRT, no cleanup, like kill -9) and
//! `sleep:<ms>` (widens a race window). Points in use are listed in
//! `docs/on-disk-format.md` next to the steps they separate.

use std::sync::OnceLock;
use std::time::Duration;

enum Action {
    Abort,
    Sleep(Duration),
}

fn table() -> &'static [(String, Action)] {
    static TABLE: OnceLock<Vec<(String, Action)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let Ok(spec) = std::env::var("DGP_FAILPOINT") else {
            return Vec::new();
        };
        spec.split(',')
            .filter(|s| !s.trim().is_empty())
            .filter_map(|item| {
                let (name, action) = item
                    .trim()
                    .split_once('=')
                    .unwrap_or((item.trim(), "abort"));
                let action = match action.strip_prefix("sleep:") {
                    Some(ms) => Action::Sleep(Duration::from_millis(ms.parse().ok()?)),
                    None if action == "abort" => Action::Abort,
                    None => return None,
                };
                Some((name.to_owned(), action))
            })
            .collect()
    })
}

/// Stops or pauses the process if `DGP_FAILPOINT` names `name`.
pub fn hit(name: &str) {
    let t = table();
    if t.is_empty() {
        return;
    }
    for (n, a) in t {
        if n == name {
            match a {
                Action::Abort => {
                    eprintln!("failpoint {name}: aborting");
                    std::process::abort();
                }
                Action::Sleep(d) => std::thread::sleep(*d),
            }
        }
    }
}
