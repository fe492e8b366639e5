//! A minimal HTTP endpoint for Prometheus: `GET /metrics` returns every counter in the text
//! exposition format. One short request per connection; anything else gets 404 or 400.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

use crate::cmd::Context;

/// Serves `listener` until the returned future is dropped.
pub(super) async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(5), answer(stream, &ctx))
                .await
                .is_err()
            {
                debug!(%peer, "metrics request timed out");
            }
        });
    }
}

async fn answer(mut stream: TcpStream, ctx: &Context) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 8192 || stream.read_buf(&mut buf).await? == 0 {
            return respond(&mut stream, "400 Bad Request", "bad request\n").await;
        }
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if method != b"GET" || !(path == b"/metrics" || path.starts_with(b"/metrics?")) {
        return respond(&mut stream, "404 Not Found", "try GET /metrics\n").await;
    }
    let mut body = crate::stats::prometheus(
        &ctx.stats,
        &ctx.store.stats(),
        ctx.store.external_bytes(),
        &ctx.config,
    );
    ctx.snapshots.prometheus(&mut body);
    respond(&mut stream, "200 OK", &body).await
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
