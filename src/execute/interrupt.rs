//! Ctrl-C: cancel the statement that is running (PostgreSQL rolls its
//! transaction back), or, between statements, stop at once: closing the
//! connection rolls back anything open. Either way nothing is half-done.

use crate::connect::Tls as MakeTlsConnector;
use postgres::CancelToken;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static ACTIVE: Mutex<Option<(CancelToken, MakeTlsConnector)>> = Mutex::new(None);

/// Installs the handler once per process.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        INTERRUPTED.store(true, Ordering::SeqCst);
        let active = ACTIVE.lock().ok().and_then(|a| a.clone());
        match active {
            Some((token, tls)) => {
                eprintln!("\ninterrupted: cancelling the running statement...");
                if token.cancel_query(tls).is_err() {
                    eprintln!("the cancel request failed; stopping (the server rolls back the open transaction)");
                    std::process::exit(130);
                }
            }
            None => {
                eprintln!("\ninterrupted: no statement was running; nothing was changed by the current step");
                std::process::exit(130);
            }
        }
    });
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Marks a statement as running on this connection until the guard is dropped.
pub struct Running;

impl Running {
    pub fn start(token: CancelToken, tls: MakeTlsConnector) -> Running {
        if let Ok(mut a) = ACTIVE.lock() {
            *a = Some((token, tls));
        }
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut a) = ACTIVE.lock() {
            *a = None;
        }
    }
}
