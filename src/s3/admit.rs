//! Admission on the S3 port: who the client is by address, and what an
//! admission decision (`gateway::admission`) means on the wire. Runs before
//! the signature is checked, so a denied address costs no HMAC work.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::ConnectInfo;
use http::HeaderMap;

use super::error::S3Error;
use crate::gateway::Decision;

/// The client address: the TCP peer, or, when the operator trusts a reverse
/// proxy in front (`DGP_TRUST_PROXY_HEADERS`), the last `X-Forwarded-For`
/// entry: the address that proxy saw. Earlier entries are the client's own
/// claims and are never used.
pub fn client_addr(ext: &http::Extensions, headers: &HeaderMap, trust_proxy: bool) -> IpAddr {
    let peer = ext
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |c| c.0.ip());
    if !trust_proxy {
        return peer;
    }
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .rfind(|v| !v.is_empty());
    last.and_then(|v| {
        v.parse::<IpAddr>()
            .ok()
            .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
    })
    .unwrap_or(peer)
}

/// What the request may go on to do: `Ok(true)` when an `allow-anonymous`
/// block admitted it (an unsigned request may then read what the block
/// matched), `Ok(false)` when no block matched, the S3 error otherwise.
pub fn apply(d: Decision, source: IpAddr) -> Result<bool, S3Error> {
    match d {
        Decision::Pass => Ok(false),
        Decision::AllowAnonymous { .. } => Ok(true),
        Decision::Deny { block } => {
            tracing::debug!(%source, block, "admission: denied");
            Err(S3Error::access_denied())
        }
        Decision::Reject {
            block,
            status,
            message,
        } => {
            tracing::debug!(%source, block, status, "admission: rejected");
            Err(S3Error::rejected(status, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(peer: &str) -> http::Extensions {
        let mut e = http::Extensions::new();
        e.insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        e
    }

    #[test]
    fn forwarded_for_only_when_trusted_and_only_the_last_hop() {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "6.6.6.6, 203.0.113.5".parse().unwrap());
        let e = ext("127.0.0.1:5000");
        assert_eq!(
            client_addr(&e, &h, false),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_addr(&e, &h, true),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        h.append("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(
            client_addr(&e, &h, true),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let mut junk = HeaderMap::new();
        junk.append("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(
            client_addr(&e, &junk, true),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_addr(&http::Extensions::new(), &HeaderMap::new(), false),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn decisions_on_the_wire() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!apply(Decision::Pass, ip).unwrap());
        assert!(apply(Decision::AllowAnonymous { block: "b".into() }, ip).unwrap());
        let e = apply(Decision::Deny { block: "b".into() }, ip).unwrap_err();
        assert_eq!((e.code, e.status.as_u16()), ("AccessDenied", 403));
        let e = apply(
            Decision::Reject {
                block: "b".into(),
                status: 429,
                message: Some("slow down".into()),
            },
            ip,
        )
        .unwrap_err();
        assert_eq!(
            (e.code, e.status.as_u16(), e.message.as_str()),
            ("TooManyRequests", 429, "slow down")
        );
        let e = apply(
            Decision::Reject {
                block: "b".into(),
                status: 503,
                message: None,
            },
            ip,
        )
        .unwrap_err();
        assert_eq!((e.code, e.status.as_u16()), ("ServiceUnavailable", 503));
    }
}
