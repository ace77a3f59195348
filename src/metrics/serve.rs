//! `--listen ADDR`: serves the latest metrics at `/metrics` while
//! `fkctl cleanup --watch` runs. The text is what the last run rendered,
//! so a scrape never waits on the database.

use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// The metrics text shared between the cleanup loop and the server thread.
#[derive(Clone, Default)]
pub struct Latest(Arc<Mutex<String>>);

impl Latest {
    pub fn set(&self, text: String) {
        if let Ok(mut guard) = self.0.lock() {
            *guard = text;
        }
    }

    fn get(&self) -> String {
        self.0.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Binds `addr` now (so that a taken port fails before any work) and serves
/// on a background thread for the life of the process.
pub fn start(addr: &str, latest: Latest) -> Result<std::net::SocketAddr> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| Error::usage(format!("--listen {addr}: cannot listen there: {e}")))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| Error::usage(format!("--listen {addr}: not an IP address and port")))?;
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let path = request.url().split('?').next().unwrap_or("");
            let response = if path == "/metrics" {
                let header = tiny_http::Header::from_bytes(
                    &b"Content-Type"[..],
                    &b"text/plain; version=0.0.4; charset=utf-8"[..],
                );
                let mut r = tiny_http::Response::from_string(latest.get());
                if let Ok(h) = header {
                    r.add_header(h);
                }
                r
            } else {
                tiny_http::Response::from_string("fkctl: metrics are at /metrics\n")
                    .with_status_code(404)
            };
            // A scraper that hung up is not fkctl's problem.
            let _ = request.respond(response);
        }
    });
    Ok(bound)
}
