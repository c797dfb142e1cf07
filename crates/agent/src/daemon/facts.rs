//! Facts: what the instance knows of itself, sent to the hub in the handshake (and again when
//! they change) so that the hub can render links such as `@{db.PrivateIpAddress}`.
//!
//! Collected: `PrivateIpAddress` (the IPv4 addresses of the interface that holds the default
//! route, primary first), `MacAddress` (of that interface), `Hostname`, and on EC2 `PublicIp`
//! from the instance metadata service (IMDSv2, one-second timeouts; a failure only leaves the fact
//! out). The `[facts]` table of the configuration overrides or adds to them. `InstanceId` is the
//! hub's business: it is the instance's id there.

use std::path::Path;
use std::time::Duration;

use opsagent_proto::Facts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::config::Config;

/// How long each request to the metadata service may take.
const IMDS_TIMEOUT: Duration = Duration::from_secs(1);
/// The metadata service's address on EC2.
const EC2_IMDS: &str = "http://169.254.169.254";

/// Collects the facts now. Never fails: what cannot be read is left out.
pub async fn collect(config: &Config) -> Facts {
    let mut facts = Facts::new();
    if let Some(iface) = default_route_interface(Path::new("/proc/net/route")) {
        let addresses = ipv4_addresses(&iface);
        if !addresses.is_empty() {
            facts.insert("PrivateIpAddress".into(), addresses);
        }
        if let Ok(mac) = std::fs::read_to_string(format!("/sys/class/net/{iface}/address")) {
            let mac = mac.trim();
            if !mac.is_empty() && mac != "00:00:00:00:00:00" {
                facts.insert("MacAddress".into(), vec![mac.to_string()]);
            }
        }
    }
    if let Ok(hostname) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        facts.insert("Hostname".into(), vec![hostname.trim().to_string()]);
    }
    let imds = config.imds_url.clone().or_else(|| on_ec2().then(|| EC2_IMDS.to_string()));
    if let Some(base) = imds {
        match public_ip(&base).await {
            Ok(Some(ip)) => {
                facts.insert("PublicIp".into(), vec![ip]);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "no public IP from the instance metadata service"),
        }
    }
    for (name, values) in &config.facts {
        facts.insert(name.clone(), values.clone());
    }
    // Within the protocol's limits: a misconfigured `[facts]` must not get the agent refused.
    opsagent_proto::bounded_facts(facts)
}

/// The interface of the default route with the lowest metric, from `/proc/net/route`.
fn default_route_interface(route: &Path) -> Option<String> {
    let text = std::fs::read_to_string(route).ok()?;
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask …
            (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| (f[6].parse::<u64>().unwrap_or(0), f[0]))
        })
        .min()
        .map(|(_, iface)| iface.to_string())
}

/// The IPv4 addresses of an interface, in the kernel's order (the primary first).
fn ipv4_addresses(iface: &str) -> Vec<String> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return Vec::new() };
    let mut out = Vec::new();
    for ifaddr in addrs.filter(|a| a.interface_name == iface) {
        if let Some(ip) = ifaddr.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|sin| sin.ip().to_string()) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

/// Whether this looks like an EC2 instance (so that other machines never wait on 169.254.169.254).
fn on_ec2() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    read("/sys/class/dmi/id/board_asset_tag").trim_start().starts_with("i-")
        || read("/sys/class/dmi/id/sys_vendor").contains("Amazon")
        || read("/sys/hypervisor/uuid").starts_with("ec2")
}

/// The public IPv4 address from IMDSv2 (`None` when the instance has none).
async fn public_ip(base: &str) -> anyhow::Result<Option<String>> {
    let base = base.trim_end_matches('/');
    let (status, token) =
        http(base, "PUT", "/latest/api/token", &[("X-aws-ec2-metadata-token-ttl-seconds", "60")]).await?;
    anyhow::ensure!(status == 200, "the token request answered {status}");
    let token = token.trim().to_string();
    let (status, body) =
        http(base, "GET", "/latest/meta-data/public-ipv4", &[("X-aws-ec2-metadata-token", &token)]).await?;
    match status {
        200 => {
            let ip = body.trim();
            Ok(ip.parse::<std::net::IpAddr>().is_ok().then(|| ip.to_string()))
        }
        404 => Ok(None),
        other => anyhow::bail!("the metadata service answered {other}"),
    }
}

/// One plain-HTTP request (the metadata service speaks nothing else), within [`IMDS_TIMEOUT`].
async fn http(base: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<(u16, String)> {
    let host = base.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("`{base}` is not an http:// URL"))?;
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(host).await?;
        let mut text =
            format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        stream.write_all(text.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut answer).await?;
        anyhow::Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    let answer = tokio::time::timeout(IMDS_TIMEOUT, request).await.map_err(|_| anyhow::anyhow!("timed out"))??;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_with_lowest_metric() {
        let dir = tempfile::tempdir().unwrap();
        let route = dir.path().join("route");
        std::fs::write(
            &route,
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n",
        )
        .unwrap();
        assert_eq!(default_route_interface(&route).as_deref(), Some("eth0"));
        std::fs::write(&route, "Iface\tDestination\n").unwrap();
        assert_eq!(default_route_interface(&route), None);
    }

    #[test]
    fn loopback_has_its_address() {
        assert!(ipv4_addresses("lo").contains(&"127.0.0.1".to_string()));
    }
}
