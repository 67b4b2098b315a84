//! Hostile input, against the real binary on a free port: what a web page
//! the user happens to open, a slow or flooding client, or a guesser of
//! tokens can send, and what the portal must answer. Each guard of
//! `docs/security.md` has its test here, so a change that undoes one fails.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod cross_site;
mod deploys;
mod health_path;
mod healthz;
mod host;
mod idempotency;
mod limits;
mod redirect;
mod sessions;

/// One answer read off the wire.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// Sends `request` as it is (it must ask for `Connection: close`) and reads
/// the answer to its end. Bodies sent chunked are joined.
pub async fn raw(port: u16, request: &str) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut bytes))
        .await
        .expect("the portal answers within a minute")
        .unwrap();
    parse(&bytes)
}

fn parse(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        unchunk(body)
    } else {
        body.to_string()
    };
    Raw {
        status,
        headers,
        body,
    }
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// Sends `head` and then `body` while reading the answer, as a client that
/// keeps sending after the portal has answered: the answer is read while it
/// arrives, and a write the portal no longer reads is not an error.
pub async fn raw_while_sending(port: u16, head: &str, body: Vec<String>) -> Raw {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = head.to_string();
    let sending = tokio::spawn(async move {
        if writer.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for part in body {
            if writer.write_all(part.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 8192];
    let read = async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the portal answers within a minute");
    sending.abort();
    parse(&bytes)
}

/// `GET path` with these extra header lines.
pub async fn get(port: u16, path: &str, host: &str, headers: &[&str]) -> Raw {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
    )
    .await
}

/// `POST path` with a body of `content_type`.
pub async fn post(
    port: u16,
    path: &str,
    host: &str,
    headers: &[&str],
    content_type: &str,
    body: &str,
) -> Raw {
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    raw(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Content-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}
