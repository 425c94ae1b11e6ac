//! The private-address guard: webhooks and timers may not reach loopback, private, link-local
//! or cloud-metadata addresses unless the operator allows it (`--allow-private-targets`). IP
//! literals are checked before connecting; names are resolved by [`Resolver`], which (guarded)
//! drops private addresses, so a public name cannot be pointed at an internal service.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// Is this address one a webhook may not reach by default (loopback, private, link-local,
/// cloud metadata, unspecified, multicast, CGNAT, unique-local)?
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d) forms.
            if let Some(v4) = v6.to_ipv4() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64
                || s[0] == 0x2002 // 6to4 embeds an IPv4 address
                || s[0] == 0x2001 && s[1] == 0x0db8 // documentation
        }
    }
}

/// The webhook client's DNS resolver (the system's, on the blocking pool). Guarded, it drops
/// private addresses, so a public name cannot be pointed at an internal service (the check
/// happens at connect time, after resolution).
#[derive(Clone, Copy)]
pub struct Resolver {
    /// Drop private addresses (and refuse a name that has no other).
    pub guarded: bool,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let guarded = self.guarded;
        Box::pin(async move {
            let host = name.as_str();
            let addrs = tokio::net::lookup_host((host, 0)).await?;
            let addrs: Vec<SocketAddr> = match guarded {
                true => addrs.filter(|a| !is_private(a.ip())).collect(),
                false => addrs.collect(),
            };
            if guarded && addrs.is_empty() {
                return Err(format!(
                    "target refused: {host} resolves only to private, loopback or link-local addresses (start the server with --allow-private-targets to allow them)"
                )
                .into());
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b:1::1",
            "fec0::1",
            "2002:7f00:1::1",
            "198.18.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }
}
