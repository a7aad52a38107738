//! `[[route.match]]` rules: header and cookie conditions on a request.

use http::header::COOKIE;

use super::fields::{as_text, RequestFields};
use crate::config::{MatchRule, ValueMatch};

/// Whether every condition of a rule holds for these request headers.
pub fn rule_matches<F: RequestFields + ?Sized>(rule: &MatchRule, headers: &F) -> bool {
    rule.headers.iter().all(|(name, want)| {
        headers
            .values_of(name)
            .any(|v| as_text(v).is_some_and(|v| value_matches(want, v)))
    }) && rule
        .cookies
        .iter()
        .all(|(name, want)| cookie_value(headers, name).is_some_and(|v| value_matches(want, v)))
}

fn value_matches(want: &ValueMatch, value: &str) -> bool {
    match want {
        ValueMatch::Exact(s) => value == s,
        ValueMatch::Prefix(p) => value.starts_with(p.as_str()),
        ValueMatch::Regex(r) => r.is_match(value),
    }
}

/// The value of a cookie, from any `Cookie` header (HTTP/2 may split cookies across several).
pub fn cookie_value<'h, F: RequestFields + ?Sized>(headers: &'h F, name: &str) -> Option<&'h str> {
    headers
        .values_of(&COOKIE)
        .filter_map(as_text)
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Version;
    use http::{HeaderMap, HeaderValue};
    use regex::Regex;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_exact_prefix_regex_and_cookies() {
        let rule = MatchRule {
            headers: vec![(
                "x-canary".parse().unwrap(),
                ValueMatch::Exact("always".into()),
            )],
            cookies: vec![],
            to: Version::Canary,
        };
        assert!(rule_matches(&rule, &headers(&[("x-canary", "always")])));
        assert!(!rule_matches(&rule, &headers(&[("x-canary", "always2")])));
        assert!(!rule_matches(&rule, &headers(&[])));

        let rule = MatchRule {
            headers: vec![(
                "user-agent".parse().unwrap(),
                ValueMatch::Prefix("Mozilla".into()),
            )],
            cookies: vec![(
                "canary".into(),
                ValueMatch::Regex(Regex::new("^(yes|always)$").unwrap()),
            )],
            to: Version::Primary,
        };
        let h = headers(&[("user-agent", "Mozilla/5.0"), ("cookie", "a=1; canary=yes")]);
        assert!(rule_matches(&rule, &h));
        let h = headers(&[("user-agent", "Mozilla/5.0"), ("cookie", "canary=no")]);
        assert!(!rule_matches(&rule, &h));
        let h = headers(&[
            ("user-agent", "Mozilla/5.0"),
            ("cookie", "a=1"),
            ("cookie", "canary=always"),
        ]);
        assert!(rule_matches(&rule, &h));
    }
}
