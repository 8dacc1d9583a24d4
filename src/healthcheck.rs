//! `wsgate healthcheck`: GET a local URL and exit 0 on a 200, for container runtimes
//! whose image has no curl (the release image holds only the binary).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why the check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// The URL is not `http://host:port/path`.
    #[error("--url / WSGATE_HEALTHCHECK_URL: expected http://host:port/path, got {0}")]
    Url(String),
    /// No answer, or not a 200.
    #[error("{url}: {why}")]
    Failed {
        /// The URL checked.
        url: String,
        /// What went wrong.
        why: String,
    },
}

/// How long the whole check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// GET `url` (plain HTTP/1.0) and succeed on status 200.
pub async fn run(url: &str) -> Result<(), HealthcheckError> {
    let uri: http::Uri = url.parse().map_err(|_| HealthcheckError::Url(url.into()))?;
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(HealthcheckError::Url(url.into()));
    };
    let host = authority.host();
    let port = authority.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let failed = |why: String| HealthcheckError::Failed {
        url: url.into(),
        why,
    };
    let check = async {
        let mut conn = tokio::net::TcpStream::connect((host, port)).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n");
        conn.write_all(req.as_bytes()).await?;
        let mut head = vec![0u8; 64];
        let n = conn.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    let head = tokio::time::timeout(TIMEOUT, check)
        .await
        .map_err(|_| failed("timed out".into()))?
        .map_err(|e| failed(e.to_string()))?;
    match head.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        other => Err(failed(format!("status {}", other.unwrap_or("missing")))),
    }
}
