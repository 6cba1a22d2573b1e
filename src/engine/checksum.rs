//! Content checksums: MD5 for ETags, SHA-256, and the `x-amz-checksum-*`
//! algorithms current SDKs send (CRC32, CRC32C, CRC64NVME, SHA1, SHA256).

use base64::Engine as _;
use crc_fast::{CrcAlgorithm, Digest as CrcDigest};
use md5::Digest as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 5] = [
        Self::Crc32,
        Self::Crc32c,
        Self::Crc64Nvme,
        Self::Sha1,
        Self::Sha256,
    ];

    /// Parses the algorithm name as S3 writes it (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "CRC32" => Self::Crc32,
            "CRC32C" => Self::Crc32c,
            "CRC64NVME" => Self::Crc64Nvme,
            "SHA1" => Self::Sha1,
            "SHA256" => Self::Sha256,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32 => "CRC32",
            Self::Crc32c => "CRC32C",
            Self::Crc64Nvme => "CRC64NVME",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
        }
    }

    /// The header that carries this checksum: `x-amz-checksum-crc32`, ...
    pub fn header(self) -> &'static str {
        match self {
            Self::Crc32 => "x-amz-checksum-crc32",
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Self::Sha1 => "x-amz-checksum-sha1",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// Length of the raw digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32 | Self::Crc32c => 4,
            Self::Crc64Nvme => 8,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
        }
    }

    pub fn is_crc(self) -> bool {
        matches!(self, Self::Crc32 | Self::Crc32c | Self::Crc64Nvme)
    }

    fn crc(self) -> Option<CrcAlgorithm> {
        match self {
            Self::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
            Self::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            Self::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
            _ => None,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Self::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Self::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            crc => Hasher::Crc(crc, CrcDigest::new(crc.crc().expect("crc"))),
        }
    }

    /// One-shot digest of a buffer.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let mut h = self.hasher();
        h.update(data);
        h.finish()
    }

    /// Full-object CRC of a concatenation, from the parts' CRCs and lengths.
    pub fn combine(self, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
        let alg = self.crc()?;
        let mut acc: Option<u64> = None;
        for (raw, len) in parts {
            let v = crc_from_bytes(raw)?;
            acc = Some(match acc {
                None => v,
                Some(a) => crc_fast::checksum_combine(alg, a, v, *len),
            });
        }
        Some(crc_to_bytes(
            self,
            acc.unwrap_or_else(|| CrcDigest::new(alg).finalize()),
        ))
    }
}

fn crc_from_bytes(raw: &[u8]) -> Option<u64> {
    match raw.len() {
        4 => Some(u32::from_be_bytes(raw.try_into().ok()?) as u64),
        8 => Some(u64::from_be_bytes(raw.try_into().ok()?)),
        _ => None,
    }
}

fn crc_to_bytes(alg: ChecksumAlgorithm, v: u64) -> Vec<u8> {
    if alg.digest_len() == 4 {
        (v as u32).to_be_bytes().to_vec()
    } else {
        v.to_be_bytes().to_vec()
    }
}

/// An incremental checksum of one of the S3 algorithms.
pub enum Hasher {
    Crc(ChecksumAlgorithm, CrcDigest),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(_, d) => d.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Crc(alg, d) => crc_to_bytes(alg, d.finalize()),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // Standard check values for "123456789".
        let d = b"123456789";
        assert_eq!(hex::encode(ChecksumAlgorithm::Crc32.digest(d)), "cbf43926");
        assert_eq!(hex::encode(ChecksumAlgorithm::Crc32c.digest(d)), "e3069283");
        assert_eq!(
            hex::encode(ChecksumAlgorithm::Crc64Nvme.digest(d)),
            "ae8b14860a799888"
        );
        assert_eq!(
            b64(&ChecksumAlgorithm::Sha256.digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn combine_matches_whole() {
        let a = vec![7u8; 1000];
        let b = vec![9u8; 333];
        for alg in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            let whole = alg.digest(&[a.clone(), b.clone()].concat());
            let parts = vec![
                (alg.digest(&a), a.len() as u64),
                (alg.digest(&b), b.len() as u64),
            ];
            assert_eq!(alg.combine(&parts).unwrap(), whole, "{alg:?}");
        }
    }
}
