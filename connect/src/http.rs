//! A thin HTTP/1.1 layer for the REST API: `httparse` reads request and response heads,
//! the rest is ours on tokio (madsim-tokio), so it runs in the simulator as well. Bodies
//! carry `Content-Length`; the server keeps connections alive, the client closes them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use runnel_actors::Node;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on one request's or response's head.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Bound on one body.
pub const MAX_BODY_BYTES: usize = 16 << 20;
/// Bound on connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// A kept-alive connection silent this long is closed.
pub const IDLE_TIMEOUT_MS: u64 = 30_000;
const MAX_HEADERS: usize = 64;

/// A request as the handlers see it: the path still percent-encoded, the query split.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A response: a status, a JSON body or none, and a `Location` for 201s.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Option<Vec<u8>>,
    pub location: Option<String>,
}

impl HttpResponse {
    pub fn empty(status: u16) -> Self {
        HttpResponse {
            status,
            body: None,
            location: None,
        }
    }

    pub fn json<T: serde::Serialize>(status: u16, value: &T) -> Self {
        let body = serde_json::to_vec(value).expect("our REST entities always serialize");
        HttpResponse {
            status,
            body: Some(body),
            location: None,
        }
    }
}

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    #[error("{what} is larger than {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    #[error("{0}: not an http:// URL with a host and port")]
    BadUrl(String),
    #[error("no answer within {timeout_ms} ms")]
    Timeout { timeout_ms: u64 },
}

/// Decodes `%XX` escapes (and `+` in queries, when `plus_is_space`).
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a path segment (a connector name) for a URL.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn split_target(target: &str) -> (String, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect();
    (path.to_string(), query)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

pub type Handler =
    Arc<dyn Fn(HttpRequest) -> Pin<Box<dyn Future<Output = HttpResponse> + Send>> + Send + Sync>;

/// Serves `listener` on `node` until the node shuts down.
pub fn serve(node: &Node, listener: TcpListener, handler: Handler) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let conn_node = node.clone();
    node.spawn_task(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "REST accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handler = handler.clone();
            conn_node.spawn_task(async move {
                if let Err(e) = serve_connection(stream, handler).await {
                    tracing::debug!(%peer, error = %e, "REST connection closed");
                }
                drop(permit);
            });
        }
    });
}

async fn serve_connection(stream: TcpStream, handler: Handler) -> Result<(), HttpError> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let idle = Duration::from_millis(IDLE_TIMEOUT_MS);
        let head = match tokio::time::timeout(idle, read_request_head(&mut reader, &mut buf)).await
        {
            Err(_) => return Ok(()),
            Ok(Ok(Some(head))) => head,
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(HttpError::TooLarge { .. })) => {
                write_response(
                    &mut writer,
                    &error_response(431, "HTTP 431 Request Header Fields Too Large"),
                    true,
                )
                .await?;
                return Ok(());
            }
            Ok(Err(e)) => {
                write_response(
                    &mut writer,
                    &error_response(400, &format!("HTTP 400 Bad Request: {e}")),
                    true,
                )
                .await?;
                return Err(e);
            }
        };
        let (method, target, content_length, chunked, close) = head;
        if chunked {
            write_response(
                &mut writer,
                &error_response(
                    411,
                    "HTTP 411 Length Required: send the body with Content-Length",
                ),
                true,
            )
            .await?;
            return Ok(());
        }
        if content_length > MAX_BODY_BYTES {
            write_response(
                &mut writer,
                &error_response(413, "HTTP 413 Payload Too Large"),
                true,
            )
            .await?;
            return Ok(());
        }
        while buf.len() < content_length {
            let mut chunk = vec![0u8; (content_length - buf.len()).min(64 * 1024)];
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body: Vec<u8> = buf.drain(..content_length).collect();
        let (path, query) = split_target(&target);
        let response = handler(HttpRequest {
            method,
            path,
            query,
            body,
        })
        .await;
        write_response(&mut writer, &response, close).await?;
        if close {
            return Ok(());
        }
    }
}

type Head = (String, String, usize, bool, bool);

/// Reads until a whole head is in `buf`, removes it and returns it; `None` at a clean EOF.
async fn read_request_head<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Head>, HttpError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request
            .parse(buf)
            .map_err(|e| HttpError::Malformed(e.to_string()))?
        {
            httparse::Status::Complete(len) => {
                let method = request.method.unwrap_or_default().to_string();
                let target = request.path.unwrap_or("/").to_string();
                let mut content_length = 0usize;
                let mut chunked = false;
                let mut close = request.version == Some(0);
                for h in request.headers.iter() {
                    let value = String::from_utf8_lossy(h.value);
                    if h.name.eq_ignore_ascii_case("content-length") {
                        content_length = value
                            .trim()
                            .parse()
                            .map_err(|_| HttpError::Malformed("bad Content-Length".into()))?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        chunked = value.to_ascii_lowercase().contains("chunked");
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        let v = value.to_ascii_lowercase();
                        close = v.contains("close") || (close && !v.contains("keep-alive"));
                    }
                }
                buf.drain(..len);
                return Ok(Some((method, target, content_length, chunked, close)));
            }
            httparse::Status::Partial => {
                if buf.len() > MAX_HEAD_BYTES {
                    return Err(HttpError::TooLarge {
                        what: "the request head",
                        limit: MAX_HEAD_BYTES,
                    });
                }
                let mut chunk = [0u8; 8192];
                let n = reader.read(&mut chunk).await?;
                if n == 0 {
                    return if buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(HttpError::Malformed("connection closed mid-request".into()))
                    };
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

fn error_response(status: u16, message: &str) -> HttpResponse {
    HttpResponse::json(
        status,
        &crate::entities::ErrorMessage {
            error_code: status,
            message: message.to_string(),
        },
    )
}

async fn write_response<W: AsyncWrite + Unpin>(
    writer: &mut W,
    response: &HttpResponse,
    close: bool,
) -> Result<(), HttpError> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    if let Some(location) = &response.location {
        head.push_str(&format!("Location: {location}\r\n"));
    }
    let body = response.body.as_deref().unwrap_or_default();
    if response.body.is_some() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(body).await?;
    // The simulated stream sends only on flush.
    writer.flush().await?;
    Ok(())
}

/// `http://host:port` (an empty host is `localhost`) as a `host:port` to connect to.
pub fn url_authority(url: &str) -> Result<String, HttpError> {
    let rest = url
        .trim()
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::BadUrl(url.to_string()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| HttpError::BadUrl(url.to_string()))?;
    port.parse::<u16>()
        .map_err(|_| HttpError::BadUrl(url.to_string()))?;
    let host = if host.is_empty() { "localhost" } else { host };
    Ok(format!("{host}:{port}"))
}

/// One request to `authority` (`host:port`) on a fresh connection; the status and body.
pub async fn request(
    authority: &str,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
    timeout_ms: u64,
) -> Result<(u16, Vec<u8>), HttpError> {
    let exchange = async {
        let stream = TcpStream::connect(authority).await?;
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n");
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes()).await?;
        if let Some(b) = body {
            writer.write_all(b).await?;
        }
        writer.flush().await?;
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = reader.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
            if raw.len() > MAX_HEAD_BYTES + MAX_BODY_BYTES {
                return Err(HttpError::TooLarge {
                    what: "the response",
                    limit: MAX_HEAD_BYTES + MAX_BODY_BYTES,
                });
            }
        }
        parse_response(&raw)
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout { timeout_ms }),
    }
}

/// A whole response read to EOF: its status and body (by Content-Length, chunked, or all).
fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response
        .parse(raw)
        .map_err(|e| HttpError::Malformed(e.to_string()))?
    {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => {
            return Err(HttpError::Malformed(
                "the response ended inside its head".into(),
            ))
        }
    };
    let status = response.code.unwrap_or(0);
    let mut content_length = None;
    let mut chunked = false;
    for h in response.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse::<usize>().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let rest = &raw[len..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = content_length {
        rest.get(..n)
            .ok_or_else(|| HttpError::Malformed("the body is shorter than Content-Length".into()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| HttpError::Malformed("bad chunk".into()))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| HttpError::Malformed("bad chunk size".into()))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data
            .get(..size)
            .ok_or_else(|| HttpError::Malformed("short chunk".into()))?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_targets_and_urls() {
        assert_eq!(percent_decode("a%20b%2Fc", false), "a b/c");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_encode("my conn/1"), "my%20conn%2F1");
        let (path, query) =
            split_target("/connectors/x/restart?includeTasks=true&onlyFailed=false");
        assert_eq!(path, "/connectors/x/restart");
        assert_eq!(
            query,
            vec![
                ("includeTasks".into(), "true".into()),
                ("onlyFailed".into(), "false".into())
            ]
        );
        assert_eq!(url_authority("http://:8083").expect("ok"), "localhost:8083");
        assert_eq!(
            url_authority("http://127.0.0.1:9/x").expect("ok"),
            "127.0.0.1:9"
        );
        assert!(url_authority("https://a:1").is_err());
    }

    #[test]
    fn parses_responses_with_length_or_chunks() {
        let (status, body) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]").expect("ok");
        assert_eq!((status, body.as_slice()), (200, &b"[]"[..]));
        let (status, body) = parse_response(b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").expect("ok");
        assert_eq!((status, body.as_slice()), (404, &b"abcde"[..]));
    }
}
