//! Owns aws-chunked request bodies: the [`StreamingSigned`] context a
//! `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` request carries, the chunk
//! and trailer signature computations, and [`decode_body`], the streaming
//! decoder that strips the framing, verifies every chunk signature (and the
//! trailer signature) before releasing the chunk's bytes, checks the decoded
//! length, and collects the trailer headers.
//!
//! Memory is bounded: a signed chunk is held until its signature is checked
//! (at most [`MAX_CHUNK_SIZE`] bytes plus what the transport delivered past
//! it); unsigned chunks are passed through as they arrive; header and trailer
//! lines longer than [`MAX_LINE`] are rejected instead of buffered.

use std::fmt;
use std::io;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use super::sigv4::{EMPTY_SHA256, hmac_sha256, sha256_hex, signature_matches};
use super::{AuthError, ByteStream, PayloadMode, Trailers};

/// Largest chunk accepted in a signed aws-chunked body (each signed chunk is
/// buffered until its signature is verified).
pub const MAX_CHUNK_SIZE: u64 = 16 * 1024 * 1024;
/// Longest chunk-size line or trailer line accepted, CRLF included.
pub const MAX_LINE: usize = 4096;
/// Largest total size of the trailer section.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Most trailer headers accepted.
pub const MAX_TRAILERS: usize = 32;

const TRAILER_SIGNATURE: &str = "x-amz-trailer-signature";

/// What decoding a `STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]` body needs:
/// the request's signing key, its signature (the seed of the chunk signature
/// chain), the credential scope, the request timestamp, and whether a signed
/// trailer follows the final chunk. `Debug` does not print the signing key.
#[derive(Clone)]
pub struct StreamingSigned {
    signing_key: Zeroizing<[u8; 32]>,
    seed_signature: String,
    scope: String,
    amz_date: String,
    signed_trailer: bool,
}

impl StreamingSigned {
    pub(super) fn new(
        signing_key: Zeroizing<[u8; 32]>,
        seed_signature: String,
        scope: String,
        amz_date: String,
        signed_trailer: bool,
    ) -> Self {
        StreamingSigned {
            signing_key,
            seed_signature,
            scope,
            amz_date,
            signed_trailer,
        }
    }

    /// The request signature (hex), which chains into the first chunk signature.
    pub fn seed_signature(&self) -> &str {
        &self.seed_signature
    }

    /// `true` for `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`.
    pub fn expects_signed_trailer(&self) -> bool {
        self.signed_trailer
    }

    /// Signature of one chunk: HMAC over
    /// `AWS4-HMAC-SHA256-PAYLOAD\n<date>\n<scope>\n<prev>\n<sha256("")>\n<sha256(data)>`.
    pub(super) fn chunk_signature(&self, previous: &str, data: &[u8]) -> [u8; 32] {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            previous,
            EMPTY_SHA256,
            sha256_hex(data)
        );
        hmac_sha256(&*self.signing_key, sts.as_bytes())
    }

    /// Signature of the trailer section: HMAC over
    /// `AWS4-HMAC-SHA256-TRAILER\n<date>\n<scope>\n<prev>\n<sha256(trailer lines)>`,
    /// each trailer line being `name:value\n`.
    pub(super) fn trailer_signature(&self, previous: &str, trailer_lines: &[u8]) -> [u8; 32] {
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            previous,
            sha256_hex(trailer_lines)
        );
        hmac_sha256(&*self.signing_key, sts.as_bytes())
    }
}

impl fmt::Debug for StreamingSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingSigned")
            .field("signing_key", &"<redacted>")
            .field("seed_signature", &self.seed_signature)
            .field("scope", &self.scope)
            .field("amz_date", &self.amz_date)
            .field("signed_trailer", &self.signed_trailer)
            .finish()
    }
}

/// Wraps a request body for its payload mode. For the two aws-chunked modes
/// the returned stream yields only the payload bytes, each chunk released
/// only after its signature (signed mode) verified; any violation is yielded
/// as one `io::Error` wrapping an [`AuthError`], after which the stream ends.
/// The decoded length is checked against `x-amz-decoded-content-length` when
/// that header is present, and trailer names against `x-amz-trailer`.
/// [`Trailers`] is filled in once the stream has ended successfully (an empty
/// map when the body had no trailer). For `Unsigned` and `Sha256` the body is
/// returned unchanged and the trailers stay empty (`get()` is `None`).
pub fn decode_body(
    body: ByteStream,
    mode: &PayloadMode,
    headers: &HeaderMap,
) -> (ByteStream, Trailers) {
    let trailers = Trailers::default();
    let (signed, expect_trailer) = match mode {
        PayloadMode::Unsigned | PayloadMode::Sha256(_) => return (body, trailers),
        PayloadMode::StreamingSigned(ctx) => (Some(ctx.clone()), ctx.signed_trailer),
        PayloadMode::StreamingUnsignedTrailer => (None, true),
    };
    let declared_len = match headers.get("x-amz-decoded-content-length") {
        None => None,
        Some(v) => match v.to_str().ok().map(str::trim).and_then(parse_decimal) {
            Some(n) => Some(n),
            None => {
                let e = AuthError::InvalidArgument(
                    "x-amz-decoded-content-length is not a valid length.".to_owned(),
                );
                return (error_stream(e), trailers);
            }
        },
    };
    let declared_trailers = match headers.get("x-amz-trailer") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) => Some(
                s.split(',')
                    .map(|n| n.trim().to_ascii_lowercase())
                    .filter(|n| !n.is_empty())
                    .collect::<Vec<_>>(),
            ),
            Err(_) => {
                let e = AuthError::InvalidArgument(
                    "x-amz-trailer is not a valid header value.".to_owned(),
                );
                return (error_stream(e), trailers);
            }
        },
    };
    let prev_signature = signed
        .as_ref()
        .map(|c| c.seed_signature.clone())
        .unwrap_or_default();
    let decoder = Decoder {
        signed,
        prev_signature,
        state: State::ChunkHeader,
        decoded_total: 0,
        declared_len,
        expect_trailer,
        declared_trailers,
        trailers: HeaderMap::new(),
        trailer_lines: Vec::new(),
        trailer_bytes: 0,
        trailer_signature_seen: false,
    };
    let driver = Driver {
        inner: body,
        buf: BytesMut::new(),
        decoder,
        inner_done: false,
        finished: false,
        trailers: trailers.clone(),
    };
    (
        Box::pin(futures::stream::unfold(driver, Driver::next_item)),
        trailers,
    )
}

fn error_stream(e: AuthError) -> ByteStream {
    Box::pin(futures::stream::once(async move { Err(e.into_io()) }))
}

/// Strict unsigned decimal (no sign, no spaces), at most 19 digits.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Strict hex chunk size: 1..=16 hex digits, nothing else.
fn parse_hex_size(s: &[u8]) -> Result<u64, AuthError> {
    if s.is_empty() || s.len() > 16 || !s.iter().all(u8::is_ascii_hexdigit) {
        return Err(AuthError::InvalidChunkSizeError(
            "the chunk size must be 1 to 16 hexadecimal digits.".to_owned(),
        ));
    }
    let mut n: u64 = 0;
    for &b in s {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        n = (n << 4) | u64::from(d);
    }
    Ok(n)
}

/// Takes one CRLF-terminated line off the front of `buf` (without the CRLF).
/// `Ok(None)`: not complete yet. Errors if no line end appears within
/// [`MAX_LINE`] bytes or the line ends with a bare LF.
fn take_line(buf: &mut BytesMut, what: &str) -> Result<Option<BytesMut>, AuthError> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => {
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(AuthError::InvalidRequest(format!(
                    "Malformed aws-chunked body: {what} line does not end with CRLF."
                )));
            }
            let mut line = buf.split_to(i + 1);
            line.truncate(i - 1);
            Ok(Some(line))
        }
        None if buf.len() >= MAX_LINE => Err(if what == "chunk-size" {
            AuthError::InvalidChunkSizeError("the chunk-size line is too long.".to_owned())
        } else {
            AuthError::MalformedTrailerError("a trailer line is too long.".to_owned())
        }),
        None => Ok(None),
    }
}

enum State {
    /// Expecting `size[;chunk-signature=...]\r\n`.
    ChunkHeader,
    /// Signed: waiting for the whole chunk plus its CRLF.
    SignedData { size: usize, signature: String },
    /// Unsigned: streaming the chunk through.
    UnsignedData { remaining: u64 },
    /// Unsigned: expecting the CRLF that ends a chunk's data.
    DataCrlf,
    /// After the final (0-size) chunk: trailer lines, then an empty line.
    Trailers,
    /// The body is complete; nothing may follow.
    Done,
}

enum Step {
    NeedMore,
    Data(Bytes),
    Done,
}

struct Decoder {
    /// `None` in `STREAMING-UNSIGNED-PAYLOAD-TRAILER` mode.
    signed: Option<StreamingSigned>,
    prev_signature: String,
    state: State,
    decoded_total: u64,
    declared_len: Option<u64>,
    /// Trailer lines may follow the final chunk.
    expect_trailer: bool,
    /// Lowercased names from `x-amz-trailer`, when sent.
    declared_trailers: Option<Vec<String>>,
    trailers: HeaderMap,
    /// `name:value\n` for each trailer line, the input of the trailer signature.
    trailer_lines: Vec<u8>,
    trailer_bytes: usize,
    trailer_signature_seen: bool,
}

impl Decoder {
    fn step(&mut self, buf: &mut BytesMut) -> Result<Step, AuthError> {
        loop {
            match &mut self.state {
                State::ChunkHeader => {
                    let Some(line) = take_line(buf, "chunk-size")? else {
                        return Ok(Step::NeedMore);
                    };
                    self.chunk_header(&line)?;
                }
                State::SignedData { size, signature } => {
                    let size = *size;
                    if buf.len() < size + 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[size..size + 2] != b"\r\n" {
                        return Err(framing(
                            "chunk data is not followed by CRLF (chunk longer than its declared size)",
                        ));
                    }
                    let data = buf.split_to(size).freeze();
                    buf.advance(2);
                    let signature = std::mem::take(signature);
                    self.verify_chunk(&data, &signature)?;
                    self.state = State::ChunkHeader;
                    return Ok(Step::Data(data));
                }
                State::UnsignedData { remaining } => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = State::DataCrlf;
                    }
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                State::DataCrlf => {
                    if buf.len() < 2 {
                        return Ok(Step::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(framing(
                            "chunk data is not followed by CRLF (chunk longer than its declared size)",
                        ));
                    }
                    buf.advance(2);
                    self.state = State::ChunkHeader;
                }
                State::Trailers => {
                    let Some(line) = take_line(buf, "trailer")? else {
                        return Ok(Step::NeedMore);
                    };
                    if line.is_empty() {
                        self.finish_trailers()?;
                        self.state = State::Done;
                    } else {
                        self.trailer_line(&line)?;
                    }
                }
                State::Done => {
                    if !buf.is_empty() {
                        return Err(framing("data follows the end of the aws-chunked body"));
                    }
                    return Ok(Step::Done);
                }
            }
        }
    }

    /// The inner stream ended and `step` needs more: fine only between two
    /// trailer lines (a sender may omit the final empty line), else truncated.
    fn at_eof(&mut self, buf: &BytesMut) -> Result<(), AuthError> {
        if matches!(self.state, State::Trailers) && buf.is_empty() {
            self.finish_trailers()?;
            self.state = State::Done;
            return Ok(());
        }
        Err(AuthError::IncompleteBody)
    }

    fn chunk_header(&mut self, line: &[u8]) -> Result<(), AuthError> {
        let (size_part, ext) = match line.iter().position(|&b| b == b';') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        let size = parse_hex_size(size_part)?;
        let signature = if self.signed.is_some() {
            let sig = ext
                .and_then(|e| e.strip_prefix(b"chunk-signature="))
                .filter(|s| s.len() == 64 && s.iter().all(u8::is_ascii_hexdigit))
                .ok_or_else(|| framing("chunk header lacks a valid chunk-signature"))?;
            if size > MAX_CHUNK_SIZE {
                return Err(AuthError::InvalidChunkSizeError(format!(
                    "chunks larger than {MAX_CHUNK_SIZE} bytes are not accepted."
                )));
            }
            // Checked above: 64 ASCII hex digits.
            String::from_utf8_lossy(sig).into_owned()
        } else {
            String::new()
        };

        if size == 0 {
            if self.signed.is_some() {
                self.verify_chunk(&[], &signature)?;
            }
            if let Some(declared) = self.declared_len
                && self.decoded_total != declared
            {
                return Err(AuthError::IncompleteBody);
            }
            self.state = State::Trailers;
            return Ok(());
        }

        let total = self.decoded_total.checked_add(size);
        if let Some(declared) = self.declared_len
            && total.is_none_or(|t| t > declared)
        {
            return Err(AuthError::InvalidRequest(
                "The aws-chunked payload is longer than x-amz-decoded-content-length.".to_owned(),
            ));
        }
        self.decoded_total = total.ok_or_else(|| framing("payload length overflows"))?;
        self.state = match self.signed {
            // MAX_CHUNK_SIZE fits in usize on every supported target.
            Some(_) => State::SignedData {
                size: usize::try_from(size).map_err(|_| framing("chunk too large"))?,
                signature,
            },
            None => State::UnsignedData { remaining: size },
        };
        Ok(())
    }

    fn verify_chunk(&mut self, data: &[u8], provided: &str) -> Result<(), AuthError> {
        let Some(ctx) = &self.signed else {
            return Ok(());
        };
        let computed = ctx.chunk_signature(&self.prev_signature, data);
        if !signature_matches(&computed, provided) {
            return Err(AuthError::SignatureDoesNotMatch);
        }
        self.prev_signature = hex::encode(computed);
        Ok(())
    }

    fn trailer_line(&mut self, line: &[u8]) -> Result<(), AuthError> {
        if !self.expect_trailer {
            return Err(framing("the final chunk is not followed by CRLF"));
        }
        if self.trailer_signature_seen {
            return Err(AuthError::MalformedTrailerError(
                "no trailer may follow x-amz-trailer-signature.".to_owned(),
            ));
        }
        self.trailer_bytes += line.len() + 2;
        if self.trailer_bytes > MAX_TRAILER_BYTES || self.trailers.len() >= MAX_TRAILERS {
            return Err(AuthError::MalformedTrailerError(
                "the trailer section is too large.".to_owned(),
            ));
        }
        let colon = line.iter().position(|&b| b == b':').ok_or_else(|| {
            AuthError::MalformedTrailerError("a trailer line has no ':'.".to_owned())
        })?;
        let name = std::str::from_utf8(&line[..colon])
            .ok()
            .map(|n| n.trim().to_ascii_lowercase())
            .and_then(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .ok_or_else(|| {
                AuthError::MalformedTrailerError("a trailer name is invalid.".to_owned())
            })?;
        let raw_value = line[colon + 1..].trim_ascii();

        if name.as_str() == TRAILER_SIGNATURE {
            if let Some(ctx) = &self.signed {
                let provided = std::str::from_utf8(raw_value).unwrap_or("");
                let computed = ctx.trailer_signature(&self.prev_signature, &self.trailer_lines);
                if !signature_matches(&computed, provided) {
                    return Err(AuthError::SignatureDoesNotMatch);
                }
                self.prev_signature = hex::encode(computed);
            }
            self.trailer_signature_seen = true;
            return Ok(());
        }

        if let Some(declared) = &self.declared_trailers
            && !declared.iter().any(|d| d == name.as_str())
        {
            return Err(AuthError::MalformedTrailerError(format!(
                "the trailer {name} was not announced in x-amz-trailer."
            )));
        }
        let value = HeaderValue::from_bytes(raw_value).map_err(|_| {
            AuthError::MalformedTrailerError("a trailer value is invalid.".to_owned())
        })?;
        self.trailer_lines.extend_from_slice(line);
        self.trailer_lines.push(b'\n');
        self.trailers.append(name, value);
        Ok(())
    }

    fn finish_trailers(&mut self) -> Result<(), AuthError> {
        if self.expect_trailer && self.signed.is_some() && !self.trailer_signature_seen {
            return Err(AuthError::MalformedTrailerError(
                "the trailer section lacks x-amz-trailer-signature.".to_owned(),
            ));
        }
        if let Some(declared) = &self.declared_trailers
            && let Some(missing) = declared
                .iter()
                .find(|d| !self.trailers.contains_key(d.as_str()))
        {
            return Err(AuthError::MalformedTrailerError(format!(
                "the trailer {missing} announced in x-amz-trailer is missing."
            )));
        }
        Ok(())
    }
}

fn framing(what: &str) -> AuthError {
    AuthError::InvalidRequest(format!("Malformed aws-chunked body: {what}."))
}

/// Pulls bytes from the inner stream into the decoder.
struct Driver {
    inner: ByteStream,
    buf: BytesMut,
    decoder: Decoder,
    inner_done: bool,
    finished: bool,
    trailers: Trailers,
}

impl Driver {
    async fn next_item(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            match self.decoder.step(&mut self.buf) {
                Err(e) => {
                    self.finished = true;
                    return Some((Err(e.into_io()), self));
                }
                Ok(Step::Data(data)) => {
                    if data.is_empty() {
                        continue;
                    }
                    return Some((Ok(data), self));
                }
                Ok(Step::Done) if self.inner_done => {
                    self.finished = true;
                    self.trailers
                        .set(std::mem::take(&mut self.decoder.trailers));
                    return None;
                }
                Ok(step) => {
                    if matches!(step, Step::NeedMore) && self.inner_done {
                        if let Err(e) = self.decoder.at_eof(&self.buf) {
                            self.finished = true;
                            return Some((Err(e.into_io()), self));
                        }
                        continue;
                    }
                    // NeedMore, or Done while the inner stream may still
                    // carry (forbidden) extra bytes: read on.
                    match self.inner.next().await {
                        Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                        Some(Err(e)) => {
                            self.finished = true;
                            return Some((Err(e), self));
                        }
                        None => self.inner_done = true,
                    }
                }
            }
        }
    }
}
