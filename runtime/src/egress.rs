//! The egress proxy: where the operator's egress policy is enforced on every outbound HTTP
//! request an instance makes.
//!
//! The worker starts an instance with `DRAAS_EGRESS=<policy>`, `DRAAS_EGRESS_PROXY=<addr>` and
//! `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` pointing at that address, which the tenant cannot
//! override. Before any component starts, draas-runtime listens there. Every request of the
//! components' HTTP clients (reqwest honours those variables) arrives here: the target host is
//! resolved, every address is judged by the policy, and the connection goes to the address
//! that was judged (so a DNS answer cannot change between the check and the connect). Anything
//! refused gets `403` with the reason, and is logged. Templated URLs are judged too, because
//! the judgement happens when the request is made.
//!
//! Plain `http://` requests (absolute-form) are forwarded one per connection
//! (`Connection: close`); `https://` goes through `CONNECT` as an opaque tunnel.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use draas_protocol::EgressPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted.
const MAX_HEAD: usize = 32 * 1024;
/// How long a client may take to send its request head, and a connect may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the proxy listens and what it enforces, from the environment the worker gave.
#[derive(Debug, Clone)]
pub struct EgressSettings {
    pub policy: EgressPolicy,
    pub listen: SocketAddr,
}

impl EgressSettings {
    /// Reads `DRAAS_EGRESS` and `DRAAS_EGRESS_PROXY` through `lookup`; `None` when no proxy
    /// is asked for. A malformed value is an error: an instance never runs unguarded by mistake.
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, String> {
        let Some(listen) = lookup("DRAAS_EGRESS_PROXY") else {
            return Ok(None);
        };
        let listen = listen
            .parse()
            .map_err(|_| format!("DRAAS_EGRESS_PROXY=`{listen}` is not an address:port"))?;
        let policy = lookup("DRAAS_EGRESS")
            .map(|text| text.parse::<EgressPolicy>())
            .transpose()
            .map_err(|e| format!("DRAAS_EGRESS: {e}"))?
            .unwrap_or_default();
        Ok(Some(EgressSettings { policy, listen }))
    }
}

/// Binds the proxy and serves it in the background for the life of the process.
pub async fn start(settings: EgressSettings) -> std::io::Result<()> {
    let listener = TcpListener::bind(settings.listen).await?;
    tracing::info!(listen = %settings.listen, policy = %settings.policy, "egress proxy listening");
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let policy = settings.policy.clone();
            tokio::spawn(async move {
                if let Err(error) = serve(client, &policy).await {
                    tracing::debug!(%error, "egress proxy connection ended");
                }
            });
        }
    });
    Ok(())
}

async fn serve(mut client: TcpStream, policy: &EgressPolicy) -> std::io::Result<()> {
    let (head, rest) = match tokio::time::timeout(TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(Some(parts))) => parts,
        Ok(Ok(None)) => return respond(&mut client, 400, "malformed request head").await,
        Ok(Err(e)) => return Err(e),
        Err(_) => return respond(&mut client, 408, "request head timed out").await,
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return respond(&mut client, 400, "malformed request line").await;
    };
    if method.eq_ignore_ascii_case("CONNECT") {
        let Some((host, port)) = split_host_port(target, 443) else {
            return respond(&mut client, 400, "CONNECT needs host:port").await;
        };
        let mut upstream = match connect(policy, &host, port).await {
            Ok(upstream) => upstream,
            Err(reason) => return refuse(&mut client, &host, &reason).await,
        };
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await?;
        upstream.write_all(&rest).await?;
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    let Ok(url) = url::Url::parse(target) else {
        return respond(
            &mut client,
            400,
            "a proxy request needs an absolute http URL",
        )
        .await;
    };
    if url.scheme() != "http" {
        return respond(
            &mut client,
            400,
            "only http:// is forwarded; https uses CONNECT",
        )
        .await;
    }
    let Some(host) = url.host_str().map(str::to_owned) else {
        return respond(&mut client, 400, "the URL has no host").await;
    };
    let mut upstream = match connect(policy, &host, url.port().unwrap_or(80)).await {
        Ok(upstream) => upstream,
        Err(reason) => return refuse(&mut client, &host, &reason).await,
    };
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let mut out = format!("{method} {path} {version}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("proxy-connection")
            || name.eq_ignore_ascii_case("proxy-authorization")
            || name.eq_ignore_ascii_case("keep-alive")
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    // One request per connection: a pooled proxy connection must never carry a second
    // request to a host that was not judged.
    out.push_str("Connection: close\r\n\r\n");
    upstream.write_all(out.as_bytes()).await?;
    upstream.write_all(&rest).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// Resolves `host`, judges every address, and connects to the first allowed one.
async fn connect(policy: &EgressPolicy, host: &str, port: u16) -> Result<TcpStream, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve `{bare}`: {e}"))?
            .collect(),
    };
    let mut last = format!("`{bare}` resolved to no address");
    for addr in addrs {
        if let Err(why) = policy.check(addr.ip()) {
            last = why;
            continue;
        }
        return match tokio::time::timeout(TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(format!("cannot connect to {addr}: {e}")),
            Err(_) => Err(format!("connecting to {addr} timed out")),
        };
    }
    Err(last)
}

async fn refuse(client: &mut TcpStream, host: &str, reason: &str) -> std::io::Result<()> {
    tracing::warn!(%host, %reason, "egress refused");
    respond(
        client,
        403,
        &format!("egress to `{host}` refused: {reason}"),
    )
    .await
}

async fn respond(client: &mut TcpStream, status: u16, message: &str) -> std::io::Result<()> {
    let reason = match status {
        400 => "Bad Request",
        403 => "Forbidden",
        _ => "Request Timeout",
    };
    let body = format!("{message}\n");
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// Reads up to the end of the request head; returns it and any bytes read past it.
async fn read_head(client: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Ok(String::from_utf8(buf).ok().map(|head| (head, rest)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

fn split_host_port(target: &str, default_port: u16) -> Option<(String, u16)> {
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default_port,
        };
        return Some((host.to_owned(), port));
    }
    match target.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((target.to_owned(), default_port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_environment_and_fail_closed() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert!(EgressSettings::from_env(&env(&[])).unwrap().is_none());
        let s = EgressSettings::from_env(&env(&[("DRAAS_EGRESS_PROXY", "127.0.0.1:9")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            s.policy,
            EgressPolicy::DenyLocal,
            "an unset policy is the default"
        );
        assert!(
            EgressSettings::from_env(&env(&[
                ("DRAAS_EGRESS_PROXY", "127.0.0.1:9"),
                ("DRAAS_EGRESS", "nonsense")
            ]))
            .is_err()
        );
        assert_eq!(
            split_host_port("[::1]:8443", 443),
            Some(("::1".into(), 8443))
        );
        assert_eq!(
            split_host_port("example.com", 443),
            Some(("example.com".into(), 443))
        );
    }
}
