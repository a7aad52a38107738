//! Hints added to the TOML reader's type and key errors, so the message says how to fix the
//! file: the nearest known key for an unknown one, and the unit a bare-number duration lacks.

/// Keys whose values are durations, by how their names end (`docs/configuration.md`).
const DURATION_KEY_ENDINGS: [&str; 5] = ["timeout", "interval", "_after", "duration", "ttl"];

/// The reader's `message` for an error at byte `offset` of `text`, with a hint when one helps.
pub(crate) fn with_hint(message: &str, text: &str, offset: usize) -> String {
    if let Some(hinted) = did_you_mean(message) {
        return hinted;
    }
    if let Some(hinted) = duration_unit(message, text, offset) {
        return hinted;
    }
    message.to_owned()
}

/// serde's "unknown field `x`, expected one of `a`, `b`" with the closest known key named.
fn did_you_mean(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (unknown, expected) = rest.split_once('`')?;
    let closest = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|known| (strsim::jaro_winkler(unknown, known), known))
        .filter(|(similarity, _)| *similarity >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))?
        .1;
    Some(format!(
        "unknown field `{unknown}` (did you mean `{closest}`?){expected}"
    ))
}

/// serde's "invalid type: integer `5`, expected a string" on a duration key, with its unit.
fn duration_unit(message: &str, text: &str, offset: usize) -> Option<String> {
    if !message.ends_with("expected a string") {
        return None;
    }
    let number = message
        .strip_prefix("invalid type: integer `")
        .or_else(|| message.strip_prefix("invalid type: floating point `"))?
        .split('`')
        .next()?;
    let key = key_at(text, offset)?;
    if !DURATION_KEY_ENDINGS.iter().any(|end| key.ends_with(end)) {
        return None;
    }
    Some(format!(
        "{message}: `{key}` is a duration, a string with its unit, e.g. \"{number}s\" or \"{number}ms\""
    ))
}

/// The key written before `=` on the line holding `offset`.
fn key_at(text: &str, offset: usize) -> Option<&str> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let (key, _) = line.split_once('=')?;
    Some(key.trim().trim_matches('"'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_names_the_closest_known_one() {
        let message = "unknown field `lisen`, expected one of `listen`, `workers`, `idle_timeout`";
        assert_eq!(
            with_hint(message, "", 0),
            "unknown field `lisen` (did you mean `listen`?), expected one of `listen`, `workers`, `idle_timeout`"
        );
    }

    #[test]
    fn an_unknown_key_like_no_known_one_is_left_alone() {
        let message = "unknown field `zzz`, expected one of `listen`, `workers`";
        assert_eq!(with_hint(message, "", 0), message);
    }

    #[test]
    fn a_bare_number_duration_gets_its_unit() {
        let text = "[proxy]\nidle_timeout = 5\n";
        let message = "invalid type: integer `5`, expected a string";
        assert_eq!(
            with_hint(message, text, text.find('5').unwrap()),
            "invalid type: integer `5`, expected a string: `idle_timeout` is a duration, a string with its unit, e.g. \"5s\" or \"5ms\""
        );
    }

    #[test]
    fn a_bare_number_elsewhere_gets_no_duration_hint() {
        let text = "[proxy]\nversion_header = 5\n";
        let message = "invalid type: integer `5`, expected a string";
        assert_eq!(with_hint(message, text, text.find('5').unwrap()), message);
    }
}
