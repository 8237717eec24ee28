//! moat's metrics, scraped from its admin endpoint and parsed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET /metrics from a moat admin endpoint.
pub(crate) async fn scrape(admin: SocketAddr) -> Result<String> {
    let text = tokio::time::timeout(Duration::from_secs(5), async {
        let mut s = TcpStream::connect(admin).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        std::io::Result::Ok(String::from_utf8_lossy(&out).into_owned())
    })
    .await
    .map_err(|_| anyhow!("GET /metrics from {admin} timed out"))??;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .context("no HTTP body")?;
    Ok(body)
}

/// Labels and value of each sample of metric `name`.
pub(crate) fn samples<'a>(text: &'a str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.split_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let mut map = BTreeMap::new();
        let mut l: &'a str = labels;
        while let Some((k, r)) = l.split_once("=\"") {
            let Some(end) = r.find('"') else { break };
            map.insert(k.trim_start_matches(',').to_string(), r[..end].to_string());
            l = &r[end + 1..];
        }
        out.push((map, v));
    }
    out
}

/// The sum of the samples of `name` whose labels include `want`.
pub(crate) fn metric(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    samples(text, name)
        .into_iter()
        .filter(|(l, _)| {
            want.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// `name` summed by the value of `label`, among samples matching `want`.
pub(crate) fn by_label(
    text: &str,
    name: &str,
    label: &str,
    want: &[(&str, &str)],
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (l, v) in samples(text, name) {
        if want
            .iter()
            .all(|(k, w)| l.get(*k).map(String::as_str) == Some(*w))
        {
            *out.entry(l.get(label).cloned().unwrap_or_default())
                .or_insert(0.0) += v;
        }
    }
    out
}
