//! The strict decoder of a chunked response body (RFC 9112 §7.1): hexadecimal sizes of at most
//! 16 digits, extensions only after `;` and without a bare CR or LF, CRLF and nothing else
//! after each size line and each chunk's data, trailers parsed as fields. Anything else is an
//! error: the body is aborted and the connection never reused.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The most bytes of chunk extensions one body may carry (hyper's limit too).
const MAX_EXTENSION_BYTES: usize = 16 * 1024;
/// The most bytes of a trailer section.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// The most trailer fields.
const MAX_TRAILERS: usize = 100;

/// Why a chunked body is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A size that is not 1 to 16 hexadecimal digits.
    #[error("invalid chunk size")]
    Size,
    /// A byte where the size line, the chunk's end or the trailers allow none.
    #[error("invalid chunk framing")]
    Framing,
    /// More than 16 KiB of extensions, or of trailers.
    #[error("chunk extensions or trailers too large")]
    TooLarge,
    /// Trailers that are not valid fields.
    #[error("invalid trailer section")]
    Trailers,
}

/// One step of decoding.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    /// Bytes of a chunk's data.
    Data(Bytes),
    /// The trailer fields (only when there are some); the body has ended.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the size's digits.
    Size { size: u64, digits: u8 },
    /// Whitespace after the size, before `;` or CRLF.
    SizeSpace { size: u64 },
    /// A chunk extension, up to CR.
    Extension { size: u64 },
    /// The LF of the size line.
    SizeLf { size: u64 },
    /// The chunk's data.
    Data { left: u64 },
    /// The CR after a chunk's data.
    DataCr,
    /// The LF after a chunk's data.
    DataLf,
    /// The trailer section after the last chunk.
    Trailers,
    /// The body has ended.
    Done,
}

/// A chunked body's decoding state.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    extension_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            extension_bytes: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Decode what the front of `buf` holds, consuming it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, ChunkError> {
        loop {
            if let State::Data { left } = self.state {
                if buf.is_empty() {
                    return Ok(Chunk::NeedMore);
                }
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                return Ok(Chunk::Data(buf.split_to(take).freeze()));
            }
            if self.state == State::Trailers {
                return self.trailers(buf);
            }
            if self.state == State::Done {
                return Ok(Chunk::End);
            }
            let Some(&byte) = buf.first() else {
                return Ok(Chunk::NeedMore);
            };
            buf.advance(1);
            self.state = self.step(byte)?;
        }
    }

    /// One byte of a size line or of a chunk's end.
    fn step(&mut self, byte: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Size { size, digits } => match hex(byte) {
                Some(d) if digits < 16 => State::Size {
                    size: (size << 4) | u64::from(d),
                    digits: digits + 1,
                },
                Some(_) => return Err(ChunkError::Size),
                None if digits == 0 => return Err(ChunkError::Size),
                None => match byte {
                    b'\r' => State::SizeLf { size },
                    b';' => State::Extension { size },
                    b' ' | b'\t' => State::SizeSpace { size },
                    _ => return Err(ChunkError::Size),
                },
            },
            State::SizeSpace { size } => match byte {
                b' ' | b'\t' => State::SizeSpace { size },
                b';' => State::Extension { size },
                b'\r' => State::SizeLf { size },
                _ => return Err(ChunkError::Size),
            },
            State::Extension { size } => {
                self.extension_bytes += 1;
                if self.extension_bytes > MAX_EXTENSION_BYTES {
                    return Err(ChunkError::TooLarge);
                }
                match byte {
                    b'\r' => State::SizeLf { size },
                    b'\t' => State::Extension { size },
                    0..=0x1f | 0x7f => return Err(ChunkError::Framing),
                    _ => State::Extension { size },
                }
            }
            State::SizeLf { size } => match byte {
                b'\n' if size == 0 => State::Trailers,
                b'\n' => State::Data { left: size },
                _ => return Err(ChunkError::Framing),
            },
            State::DataCr => match byte {
                b'\r' => State::DataLf,
                _ => return Err(ChunkError::Framing),
            },
            State::DataLf => match byte {
                b'\n' => State::Size { size: 0, digits: 0 },
                _ => return Err(ChunkError::Framing),
            },
            State::Data { .. } | State::Trailers | State::Done => self.state,
        })
    }

    /// The trailer section: an empty line, or fields ending with one, each line ended by CRLF.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Chunk, ChunkError> {
        if buf.len() < 2 {
            return Ok(Chunk::NeedMore);
        }
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Chunk::End);
        }
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > MAX_TRAILER_BYTES {
                return Err(ChunkError::TooLarge);
            }
            return Ok(Chunk::NeedMore);
        };
        let len = end + 4;
        if len > MAX_TRAILER_BYTES {
            return Err(ChunkError::TooLarge);
        }
        let section = &buf[..len];
        // A bare CR or LF inside the section is not a line end this decoder accepts.
        if section.iter().enumerate().any(|(i, b)| match b {
            b'\r' => section.get(i + 1) != Some(&b'\n'),
            b'\n' => i == 0 || section[i - 1] != b'\r',
            _ => false,
        }) {
            return Err(ChunkError::Trailers);
        }
        let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
        let parsed = match httparse::parse_headers(section, &mut fields) {
            Ok(httparse::Status::Complete((used, parsed))) if used == len => parsed,
            _ => return Err(ChunkError::Trailers),
        };
        let mut trailers = HeaderMap::with_capacity(parsed.len());
        for field in parsed.iter() {
            let name =
                HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ChunkError::Trailers)?;
            let value = HeaderValue::from_bytes(field.value).map_err(|_| ChunkError::Trailers)?;
            trailers.append(name, value);
        }
        buf.advance(len);
        self.state = State::Done;
        Ok(Chunk::Trailers(trailers))
    }
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Decode all of `input`, fed `step` bytes at a time.
    fn decode(
        input: &[u8],
        step: usize,
    ) -> Result<(Vec<u8>, Option<HeaderMap>, usize), ChunkError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Chunk::Data(d) => body.extend_from_slice(&d),
                Chunk::Trailers(t) => return Ok((body, Some(t), buf.len() + input.len() - fed)),
                Chunk::End => return Ok((body, None, buf.len() + input.len() - fed)),
                Chunk::NeedMore if fed == input.len() => return Err(ChunkError::Framing),
                Chunk::NeedMore => {
                    let next = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..next]);
                    fed = next;
                }
            }
        }
    }

    #[test]
    fn valid_bodies_decode_at_any_split() {
        let input =
            b"5;name=\"v\"\r\nhello\r\n6 \r\n world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, 100] {
            let (body, trailers, left) = decode(input, step).unwrap();
            assert_eq!(body, b"hello world0123456789");
            assert_eq!(trailers.unwrap()["x-t"], "1");
            assert_eq!(left, 4, "bytes after the body stay unread");
        }
        let (body, trailers, left) = decode(b"0\r\n\r\n", 1).unwrap();
        assert!(body.is_empty() && trailers.is_none() && left == 0);
    }

    #[test]
    fn invalid_bodies_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"-1\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloX\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"0\r\nX-T: 1\n\r\n\r\n",
            b"0\r\nbad line\r\n\r\n",
        ] {
            assert!(
                decode(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut huge = b"1;".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_EXTENSION_BYTES + 1));
        assert_eq!(decode(&huge, 4096), Err(ChunkError::TooLarge));
    }

    #[test]
    fn sixteen_digits_are_the_most() {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nab"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Chunk::Data(Bytes::from_static(b"ab")))
        );
    }
}
