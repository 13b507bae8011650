//! TLS for the simulated API server: a throwaway CA and a leaf certificate it signs
//! (`CA:FALSE`, SAN 127.0.0.1 and localhost, serverAuth). kubectl sends a bearer token only
//! over https, and rustls refuses a self-signed CA used as its own server certificate.

use crate::error::{Error, ErrorKind, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::sync::Arc;

pub struct Tls {
    /// PEM of the CA, for the kubeconfig's `certificate-authority-data`.
    pub ca_pem: String,
    pub config: Arc<rustls::ServerConfig>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::Io, format!("cannot create the simulated API server's certificates: {e}"))
}

pub fn generate() -> Result<Tls> {
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "flux-harness simulated cluster CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    leaf.distinguished_name.push(DnType::CommonName, "flux-harness simulated API server");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.subject_alt_names = vec![
        SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        SanType::DnsName("localhost".try_into().map_err(err)?),
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).map_err(err)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(err)?
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf_cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .map_err(err)?;
    Ok(Tls { ca_pem: ca_cert.pem(), config: Arc::new(config) })
}

/// RFC 3339 UTC time from Unix milliseconds, with the milliseconds: the simulated
/// cluster's condition times are virtual time, and the e2e order proof reads them, so they
/// keep the sub-second order that a whole-second stamp would turn into ties. Clients
/// (kubectl's `time.Parse(RFC3339)`, k8s-openapi) accept the fraction.
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let s = rfc3339(unix_ms);
    format!("{}.{:03}Z", &s[..s.len() - 1], unix_ms % 1000)
}

/// Unix milliseconds from an RFC 3339 time (`Z` or `+hh:mm` offsets, optional fraction);
/// `None` for anything else.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let f = &frac[..digits];
        ms = format!("{:0<3}", &f[..digits.min(3)]).parse().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let v = o[1..3].parse::<i64>().ok()? * 60 + o[4..6].parse::<i64>().ok()?;
            if o.starts_with('-') { -v } else { v }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm), the inverse of the one in `rfc3339`.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86400 + hh * 3600 + mm * 60 + ss) - offset_min * 60) * 1000 + ms)
}

/// RFC 3339 UTC time from Unix milliseconds (no clock read here).
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_000_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339_ms(1_795_000_000_042), "2026-11-18T11:06:40.042Z");
    }

    #[test]
    fn rfc3339_parses_back() {
        for ms in [0u64, 951_782_400_000, 1_795_000_000_042, 4_102_444_799_999] {
            assert_eq!(super::parse_rfc3339(&super::rfc3339_ms(ms)), Some(ms as i64));
        }
        assert_eq!(super::parse_rfc3339("2026-11-18T11:06:40Z"), Some(1_795_000_000_000));
        assert_eq!(super::parse_rfc3339("2026-11-18T12:06:40.5+01:00"), Some(1_795_000_000_500));
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-18T11:06:40", "2026-11-18T11:06:40.Z"] {
            assert_eq!(super::parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn certificates_are_made() {
        let t = super::generate().unwrap();
        assert!(t.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
