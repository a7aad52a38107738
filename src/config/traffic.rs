//! The rules of the tables that steer or copy traffic: `[[route.match]]` (header and cookie
//! conditions, regexes, `to`), `[route.sticky]` and `[route.mirror]`.

use http::Method;
use regex::Regex;
use toml::Spanned;

use super::error::Issue;
use super::raw::{RawMatch, RawMatchValue, RawMirror, RawSticky};
use super::types::{MatchRule, MirrorConfig, StickyKey, ValueMatch, Version};
use super::validate::{header_name, int_in, Checked};

/// Validates one `[[route.match]]` rule.
pub(crate) fn match_rule(raw: &Spanned<RawMatch>) -> Checked<MatchRule> {
    let m = raw.get_ref();
    if m.headers.0.is_empty() && m.cookies.0.is_empty() {
        return Err(Issue::new(
            raw.span(),
            "a [[route.match]] rule needs at least one entry in `headers` or `cookies`",
        ));
    }
    let headers = m
        .headers
        .0
        .iter()
        .map(|(name, value)| Ok((header_name(name, "match header")?, value_match(value)?)))
        .collect::<Checked<Vec<_>>>()?;
    let cookies = m
        .cookies
        .0
        .iter()
        .map(|(name, value)| Ok((cookie_name(name, "match cookie")?, value_match(value)?)))
        .collect::<Checked<Vec<_>>>()?;
    let to = match m.to.get_ref().as_str() {
        "canary" => Version::Canary,
        "primary" => Version::Primary,
        other => {
            return Err(Issue::new(
                m.to.span(),
                format!("`to` must be \"canary\" or \"primary\", got {other:?}"),
            ))
        }
    };
    Ok(MatchRule {
        headers,
        cookies,
        to,
    })
}

/// A cookie name: an RFC 6265 token (visible ASCII without separators).
fn cookie_name(value: &Spanned<String>, what: &str) -> Checked<String> {
    let name = value.get_ref();
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if ok {
        Ok(name.clone())
    } else {
        Err(Issue::new(
            value.span(),
            format!("{what} {name:?} is not a valid cookie name"),
        ))
    }
}

fn value_match(raw: &Spanned<RawMatchValue>) -> Checked<ValueMatch> {
    let table = match raw.get_ref() {
        RawMatchValue::Plain(s) => return Ok(ValueMatch::Exact(s.clone())),
        RawMatchValue::Table(t) => t,
    };
    let given = [&table.exact, &table.prefix, &table.regex]
        .into_iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err(Issue::new(
            raw.span(),
            "a match condition needs exactly one of `exact`, `prefix` or `regex`",
        ));
    }
    if let Some(v) = &table.exact {
        return Ok(ValueMatch::Exact(v.get_ref().clone()));
    }
    if let Some(v) = &table.prefix {
        return Ok(ValueMatch::Prefix(v.get_ref().clone()));
    }
    match &table.regex {
        Some(v) => Regex::new(v.get_ref()).map(ValueMatch::Regex).map_err(|e| {
            Issue::new(
                v.span(),
                format!("invalid regex {:?}: {}", v.get_ref(), regex_reason(&e)),
            )
        }),
        None => Err(Issue::new(
            raw.span(),
            "a match condition needs `exact`, `prefix` or `regex`",
        )),
    }
}

/// The regex crate prints a multi-line diagram; keep the one line that says what is wrong so
/// the message stays on the `FILE:LINE:COL:` line.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map_or_else(
            || text.split_whitespace().collect::<Vec<_>>().join(" "),
            str::to_owned,
        )
}

/// Validates `[route.sticky]`: exactly one of `cookie` or `header`.
pub(crate) fn sticky_key(raw: &Spanned<RawSticky>) -> Checked<StickyKey> {
    let s = raw.get_ref();
    match (&s.cookie, &s.header) {
        (Some(c), None) => Ok(StickyKey::Cookie(cookie_name(c, "sticky cookie")?)),
        (None, Some(h)) => Ok(StickyKey::Header(header_name(h, "sticky header")?)),
        (Some(c), Some(h)) => Err(Issue::new(
            if c.span().start > h.span().start {
                c.span()
            } else {
                h.span()
            },
            "[route.sticky] takes exactly one of `cookie` or `header`, not both",
        )),
        (None, None) => Err(Issue::new(
            raw.span(),
            "[route.sticky] needs `cookie` or `header`, e.g. cookie = \"session_id\"",
        )),
    }
}

/// The methods HTTP defines; a lower-case spelling of one of them is surely a typo, since
/// methods are case-sensitive.
const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// Validates `[route.mirror]`.
pub(crate) fn mirror_config(m: &RawMirror) -> Checked<MirrorConfig> {
    let percent = int_in(&m.percent, "percent", 0, 100)?;
    let methods = m
        .methods
        .iter()
        .map(|v| {
            let text = v.get_ref();
            let upper = text.to_ascii_uppercase();
            if upper != *text && STANDARD_METHODS.contains(&upper.as_str()) {
                return Err(Issue::new(
                    v.span(),
                    format!("HTTP methods are case-sensitive; write {upper:?}, not {text:?}"),
                ));
            }
            Method::from_bytes(text.as_bytes())
                .map_err(|_| Issue::new(v.span(), format!("{text:?} is not a valid HTTP method")))
        })
        .collect::<Checked<Vec<_>>>()?;
    let max_body_bytes = int_in(&m.max_body_bytes, "max_body_bytes", 0, i64::MAX)?;
    Ok(MirrorConfig {
        percent,
        methods,
        max_body_bytes,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sp(s: &str) -> Spanned<String> {
        Spanned::new(1..2, s.to_owned())
    }

    #[test]
    fn regex_errors_fit_on_one_line() {
        // Built at run time so clippy does not reject the deliberately broken pattern.
        let pattern = String::from("(unclosed");
        let Err(e) = Regex::new(&pattern) else {
            panic!("regex compiled")
        };
        let reason = regex_reason(&e);
        assert!(!reason.contains('\n'));
        assert!(reason.contains("unclosed group"), "{reason}");
    }

    #[test]
    fn cookie_names() {
        assert!(cookie_name(&sp("session_id"), "c").is_ok());
        assert!(cookie_name(&sp("a=b"), "c").is_err());
        assert!(cookie_name(&sp(""), "c").is_err());
    }
}
