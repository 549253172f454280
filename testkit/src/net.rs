//! Loopback helpers: free ports, a plain HTTP GET, Prometheus samples.

use std::time::Duration;

/// `GET path` over plain HTTP/1.0; the body of a 200 answer.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(head.lines().next().unwrap_or("").to_string()));
    }
    Ok(body.to_string())
}

/// The value of one Prometheus sample: `name` with every label in `labels` (others ignored);
/// summed over the matching series; 0 when there is none.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            if n != name {
                return None;
            }
            // `,key="value"` against `,` + the labels: `region` never matches `node_region`.
            let rest = format!(",{rest}");
            let ok = labels.iter().all(|(k, v)| rest.contains(&format!(",{k}=\"{v}\"")));
            ok.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A port for a test node to listen on, from below the kernel's ephemeral range.
///
/// Asking the kernel for port 0 and releasing it races: until the node binds it, any
/// outgoing connection (the delay proxies make many) may be given that same port, and the
/// node then fails to start. Ports below the ephemeral range are never handed out for
/// outgoing connections, so only another explicit listener could take one; a process-wide
/// counter (offset by the pid) keeps this process's picks apart, and each pick is checked
/// to be free right now.
pub fn free_port() -> u16 {
    use std::sync::atomic::AtomicU32;
    use std::sync::atomic::Ordering;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (ephemeral_low.saturating_sub(12_000).max(1024), ephemeral_low);
    if high <= low + 1000 {
        // An unusual ephemeral range: fall back to the kernel's pick.
        return std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
    }
    let span = high - low;
    let offset = (std::process::id() * 251) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (offset + n) % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}
