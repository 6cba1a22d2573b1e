//! The VCDIFF (RFC 3284, xdelta3-compatible) codec, behind a small API that
//! enforces the settings the codec is safe with (docs/adr/0002-delta-codec.md):
//! level 6, 8 MiB target windows, per-window Adler-32, no secondary
//! compression (so every stored delta decodes with stock `xdelta3 -d`).
//!
//! Before a stored delta reaches the decoder, [`check_framing`] walks its
//! window headers: a damaged header that claims more bytes than the delta
//! holds, or a target window larger than the format's 16 MiB limit, is an
//! error here instead of a huge allocation in the decoder. The decoder's
//! output is always checked by the caller against the recorded size and
//! SHA-256 (a delta cut at a window boundary decodes "successfully" short).

use std::io::{self, Read, Write};

use oxidelta::compress::decoder::DeltaDecoder;
use oxidelta::compress::encoder::{CompressOptions, DeltaEncoder};

/// xdelta3's (and RFC 3284 decoders') hard limit on one target window.
const MAX_WINDOW: u64 = 16 * 1024 * 1024;

fn options() -> CompressOptions {
    CompressOptions {
        level: 6,
        window_size: 8 * 1024 * 1024,
        checksum: true,
        ..CompressOptions::default()
    }
}

/// Encodes `target` (streamed) against `source` into `out`; returns the
/// number of target bytes read.
pub fn encode(source: &[u8], target: &mut dyn Read, out: &mut dyn Write) -> io::Result<u64> {
    let mut enc = DeltaEncoder::new(out, source, options());
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match target.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        enc.write_target(&buf[..n]).map_err(enc_err)?;
    }
    let read = enc.bytes_in();
    enc.finish().map_err(enc_err)?;
    Ok(read)
}

fn enc_err(e: oxidelta::compress::encoder::EncodeError) -> io::Error {
    match e {
        oxidelta::compress::encoder::EncodeError::Io(e) => e,
    }
}

/// Decodes `delta` against `source` into `out`; returns the bytes written.
/// Call [`check_framing`] on the same delta first.
pub fn decode(source: &[u8], delta: &mut dyn Read, out: &mut dyn Write) -> io::Result<u64> {
    let mut src = source;
    let mut dec = DeltaDecoder::new(delta);
    dec.decode_to(&mut src, &mut WriteRef(out))
        .map_err(|e| match e {
            oxidelta::vcdiff::decoder::DecodeError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        })
}

/// `&mut dyn Write` as a sized `Write` for the decoder's generic parameter.
struct WriteRef<'a>(&'a mut dyn Write);
impl Write for WriteRef<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("damaged delta: {what}"))
}

/// A reader that counts what it consumed.
struct Counted<'a> {
    inner: &'a mut dyn Read,
    pos: u64,
}

impl Counted<'_> {
    fn byte(&mut self) -> io::Result<Option<u8>> {
        let mut b = [0u8; 1];
        loop {
            return match self.inner.read(&mut b) {
                Ok(0) => Ok(None),
                Ok(_) => {
                    self.pos += 1;
                    Ok(Some(b[0]))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    fn need(&mut self) -> io::Result<u8> {
        self.byte()?.ok_or_else(|| bad("truncated header"))
    }

    /// RFC 3284 integer: base-128, most significant digit first.
    fn varint(&mut self) -> io::Result<u64> {
        let mut v: u64 = 0;
        for _ in 0..10 {
            let b = self.need()?;
            v = v
                .checked_mul(128)
                .and_then(|v| v.checked_add(u64::from(b & 0x7f)))
                .ok_or_else(|| bad("integer overflow"))?;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("integer too long"))
    }

    fn skip(&mut self, mut n: u64) -> io::Result<()> {
        let mut buf = [0u8; 8192];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            match self.inner.read(&mut buf[..k]) {
                Ok(0) => return Err(bad("truncated section")),
                Ok(r) => {
                    n -= r as u64;
                    self.pos += r as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Walks the window headers of a stored delta of `delta_len` bytes whose
/// output must be `target_len` bytes: every declared length fits in what is
/// left of the delta, every target window is at most 16 MiB, and the
/// windows add up to `target_len`.
pub fn check_framing(delta: &mut dyn Read, delta_len: u64, target_len: u64) -> io::Result<()> {
    let mut r = Counted {
        inner: delta,
        pos: 0,
    };
    let magic = [r.need()?, r.need()?, r.need()?, r.need()?];
    if magic[..3] != [0xD6, 0xC3, 0xC4] {
        return Err(bad("not a VCDIFF stream"));
    }
    let hdr = r.need()?;
    if hdr & 0x01 != 0 {
        return Err(bad("secondary compression is not used by this store"));
    }
    if hdr & 0x02 != 0 {
        let n = r.varint()?;
        r.skip(n)?;
    }
    if hdr & 0x04 != 0 {
        let n = r.varint()?;
        if n > delta_len.saturating_sub(r.pos) {
            return Err(bad("application header longer than the delta"));
        }
        r.skip(n)?;
    }
    let mut produced: u64 = 0;
    while let Some(win) = r.byte()? {
        if win & 0x03 != 0 {
            let _segment_len = r.varint()?;
            let _segment_pos = r.varint()?;
        }
        let enc_len = r.varint()?;
        if enc_len > delta_len.saturating_sub(r.pos) {
            return Err(bad("window longer than the delta"));
        }
        let start = r.pos;
        let window = r.varint()?;
        if window > MAX_WINDOW {
            return Err(bad("target window over 16 MiB"));
        }
        let _indicator = r.need()?;
        let data = r.varint()?;
        let inst = r.varint()?;
        let addr = r.varint()?;
        if win & 0x04 != 0 {
            r.skip(4)?;
        }
        let header = r.pos - start;
        let sections = data
            .checked_add(inst)
            .and_then(|s| s.checked_add(addr))
            .ok_or_else(|| bad("section lengths overflow"))?;
        if header.checked_add(sections) != Some(enc_len) {
            return Err(bad("section lengths do not match the window length"));
        }
        r.skip(sections)?;
        produced = produced.saturating_add(window);
    }
    if produced != target_len {
        return Err(bad("windows do not add up to the object's size"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(src: &[u8], tgt: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        assert_eq!(
            encode(src, &mut &tgt[..], &mut out).unwrap(),
            tgt.len() as u64
        );
        out
    }

    fn dec(src: &[u8], delta: &[u8], len: u64) -> io::Result<Vec<u8>> {
        check_framing(&mut &delta[..], delta.len() as u64, len)?;
        let mut out = Vec::new();
        decode(src, &mut &delta[..], &mut out)?;
        Ok(out)
    }

    fn pseudo(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_including_the_cases_that_break_the_xdelta3_crate() {
        let src = pseudo(300_000, 1);
        let mut edited = src.clone();
        edited[1000..1010].copy_from_slice(b"0123456789");
        edited.extend_from_slice(b"tail");
        let zeros = vec![0u8; 40 * 1024 * 1024]; // compressible: > 2x (delta + source)
        for (s, t) in [
            (&src[..], &edited[..]),
            (&src[..], &src[..]),
            (&b""[..], &b""[..]),
            (&src[..], &b""[..]),
            (&b""[..], &src[..]),
            (&src[..4096], &zeros[..]),
        ] {
            let d = enc(s, t);
            assert_eq!(dec(s, &d, t.len() as u64).unwrap(), t);
        }
        let d = enc(&src, &edited);
        assert!(
            d.len() < 2000,
            "delta of a small edit is small: {}",
            d.len()
        );
    }

    #[test]
    fn framing_catches_lies_and_truncation() {
        let src = pseudo(100_000, 2);
        let tgt = pseudo(20 * 1024 * 1024, 3); // 3 windows
        let d = enc(&src, &tgt);
        check_framing(&mut &d[..], d.len() as u64, tgt.len() as u64).unwrap();
        // Wrong expected size.
        assert!(check_framing(&mut &d[..], d.len() as u64, tgt.len() as u64 - 1).is_err());
        // Cut anywhere, including at a window boundary.
        for cut in [3, 5, 10, d.len() / 3, d.len() / 2, d.len() - 1] {
            let short = &d[..cut];
            assert!(dec(&src, short, tgt.len() as u64).is_err(), "cut {cut}");
        }
        // A header claiming a huge section: refused before any allocation.
        let mut evil = d[..5].to_vec();
        evil.extend_from_slice(&[0x00, 0x8f, 0xff, 0xff, 0xff, 0x7f]);
        evil.extend_from_slice(&[0u8; 20]);
        assert!(check_framing(&mut &evil[..], evil.len() as u64, 1).is_err());
    }

    #[test]
    fn output_decodes_with_the_xdelta3_tool() {
        if std::process::Command::new("xdelta3")
            .arg("-V")
            .output()
            .is_err()
        {
            eprintln!("xdelta3 not installed: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = pseudo(500_000, 4);
        let mut tgt = src.clone();
        tgt[400_000..400_100].fill(7);
        std::fs::write(dir.path().join("src"), &src).unwrap();
        std::fs::write(dir.path().join("tgt"), &tgt).unwrap();
        std::fs::write(dir.path().join("ours.vcdiff"), enc(&src, &tgt)).unwrap();
        let st = std::process::Command::new("xdelta3")
            .current_dir(dir.path())
            .args(["-d", "-f", "-s", "src", "ours.vcdiff", "out"])
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), tgt);
        // And a delta made by the tool (no secondary compression) decodes here.
        let st = std::process::Command::new("xdelta3")
            .current_dir(dir.path())
            .args([
                "-e",
                "-f",
                "-S",
                "none",
                "-s",
                "src",
                "tgt",
                "theirs.vcdiff",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let theirs = std::fs::read(dir.path().join("theirs.vcdiff")).unwrap();
        assert_eq!(dec(&src, &theirs, tgt.len() as u64).unwrap(), tgt);
    }
}
