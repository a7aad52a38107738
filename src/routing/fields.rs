//! The request fields routing reads — `[[route.match]]` headers and cookies, sticky keys — from
//! hyper's `HeaderMap` or from the fast path's flat view of a head
//! (docs/performance.md#the-client-side-fast-path), through one trait, so that both choose a
//! version by the same code.

use http::{HeaderMap, HeaderName};

/// A request's fields, by name.
pub trait RequestFields {
    /// Every value of `name`, in the order sent.
    fn values_of<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s [u8]> + 's;

    /// The first value of `name`.
    fn first_of<'s>(&'s self, name: &'s HeaderName) -> Option<&'s [u8]> {
        self.values_of(name).next()
    }
}

impl RequestFields for HeaderMap {
    fn values_of<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s [u8]> + 's {
        self.get_all(name).iter().map(|v| v.as_bytes())
    }
}

/// The fields of a head parsed with `httparse`, names as sent.
#[derive(Debug, Clone, Copy)]
pub struct FlatFields<'h, 'b>(pub &'h [httparse::Header<'b>]);

impl RequestFields for FlatFields<'_, '_> {
    fn values_of<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s [u8]> + 's {
        self.0
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name.as_str()))
            .map(|f| f.value)
    }
}

/// A value as text, when it is what `HeaderValue::to_str` accepts: visible ASCII, spaces and
/// tabs.
pub fn as_text(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_what_header_values_read_as_text() {
        for bytes in [
            &b"abc"[..],
            b"a\tb",
            b"",
            b"caf\xc3\xa9",
            b"a\x7fb",
            b"a\x01",
        ] {
            let value = http::HeaderValue::from_bytes(bytes);
            let expected = value.as_ref().ok().and_then(|v| v.to_str().ok());
            if value.is_ok() {
                assert_eq!(as_text(bytes), expected, "{bytes:?}");
            }
        }
    }
}
